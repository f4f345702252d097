-- Activity collection (issue 17): one cursor per grant and source, and the upstream records
-- already recorded for each grant, so that nothing is recorded twice.
CREATE TABLE activity_cursors (
    grant_id    TEXT COLLATE "C" NOT NULL,
    source      TEXT COLLATE "C" NOT NULL,
    cursor_pos  TEXT NOT NULL DEFAULT '',
    next_at     BIGINT NOT NULL DEFAULT 0,
    done        BIGINT NOT NULL DEFAULT 0,
    failures    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    last_ok     BIGINT NOT NULL DEFAULT 0,
    events      BIGINT NOT NULL DEFAULT 0,
    claimed_by  TEXT NOT NULL DEFAULT '',
    claimed_to  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grant_id, source)
);
CREATE INDEX activity_cursors_due ON activity_cursors(source, next_at) WHERE done = 0;
CREATE TABLE activity_seen (
    grant_id    TEXT COLLATE "C" NOT NULL,
    source      TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (grant_id, source, key)
);
-- Cursors are created for grants revoked within the after-end window.
CREATE INDEX grants_revoked_at ON grants(revoked_at) WHERE state = 'revoked';
