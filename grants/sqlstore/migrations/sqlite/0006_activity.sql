-- Activity collection (issue 17): one cursor per grant and source, and the upstream records
-- already recorded for each grant, so that nothing is recorded twice.
CREATE TABLE activity_cursors (
    grant_id    TEXT NOT NULL,
    source      TEXT NOT NULL,
    cursor_pos  TEXT NOT NULL DEFAULT '',
    next_at     INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    last_ok     INTEGER NOT NULL DEFAULT 0,
    events      INTEGER NOT NULL DEFAULT 0,
    claimed_by  TEXT NOT NULL DEFAULT '',
    claimed_to  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grant_id, source)
);
CREATE INDEX activity_cursors_due ON activity_cursors(source, next_at) WHERE done = 0;
CREATE TABLE activity_seen (
    grant_id    TEXT NOT NULL,
    source      TEXT NOT NULL,
    key         TEXT NOT NULL,
    PRIMARY KEY (grant_id, source, key)
);
-- Cursors are created for grants revoked within the after-end window.
CREATE INDEX grants_revoked_at ON grants(revoked_at) WHERE state = 'revoked';
