-- Drift (issue #15.5): when the reconciler finds that the access a live grant should give is
-- gone upstream (a role dropped, a membership removed out of band), it marks the grant with
-- the time it found so; 0 means not marked.
ALTER TABLE grants ADD COLUMN access_missing_at BIGINT NOT NULL DEFAULT 0;
