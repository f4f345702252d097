-- accessbroker schema v1 (SQLite). Times are INTEGER milliseconds since the Unix epoch, UTC;
-- 0 means "not set". Nothing about a request or grant is ever deleted.

CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    requester     TEXT NOT NULL,              -- JSON grants.Person
    slack_user    TEXT NOT NULL,
    resource      TEXT NOT NULL,
    duration_ms   INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    source        TEXT NOT NULL,
    state         TEXT NOT NULL,
    approvals     TEXT NOT NULL,              -- JSON []grants.Approval
    incident_id   TEXT NOT NULL,
    evidence      TEXT NOT NULL,              -- JSON map
    external_key  TEXT UNIQUE,                -- dedupe key; NULL when unset
    notify        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    decided_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX requests_state ON requests(state, created_at);
CREATE INDEX requests_slack_user ON requests(slack_user, created_at);

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL,
    resource      TEXT NOT NULL,
    provider      TEXT NOT NULL,
    person        TEXT NOT NULL,              -- JSON grants.Person
    slack_user    TEXT NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    incident_id   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER NOT NULL,
    revoke_cause  TEXT NOT NULL,
    handle        TEXT NOT NULL,              -- JSON grants.Handle (never a secret)
    handle_key    TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    last_error    TEXT NOT NULL,
    claimed_by    TEXT NOT NULL,
    claimed_to    INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX grants_due ON grants(due_at) WHERE state <> 'revoked';
CREATE INDEX grants_state ON grants(state, created_at);
CREATE INDEX grants_handle_key ON grants(handle_key) WHERE handle_key <> '' AND state <> 'revoked';
CREATE INDEX grants_incident ON grants(incident_id) WHERE incident_id <> '';
CREATE INDEX grants_slack_user ON grants(slack_user, created_at);
CREATE INDEX grants_request ON grants(request_id);

CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    time_ms       INTEGER NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT NOT NULL,
    actor_email   TEXT NOT NULL,
    action        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    grant_id      TEXT NOT NULL,
    resource      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    evidence      TEXT NOT NULL,              -- JSON map, "" when empty
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_time ON audit_events(time_ms);
CREATE INDEX audit_actor ON audit_events(actor_id, seq);
CREATE INDEX audit_actor_email ON audit_events(actor_email, seq);
CREATE INDEX audit_resource ON audit_events(resource, seq);
CREATE INDEX audit_action ON audit_events(action, seq);
CREATE INDEX audit_grant ON audit_events(grant_id, seq);
CREATE INDEX audit_request ON audit_events(request_id, seq);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END;

CREATE TABLE audit_checkpoints (
    seq           INTEGER NOT NULL,
    hash          TEXT NOT NULL,
    time_ms       INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    signature     BLOB NOT NULL,
    PRIMARY KEY (seq, time_ms)
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused'); END;

-- Keys already acted on (webhook event ids, slash-command replays), kept for dedupe.
CREATE TABLE seen_keys (
    key           TEXT PRIMARY KEY,
    seen_at       INTEGER NOT NULL
);

-- Named leases for work that only one process may do at a time (weekly summary, checkpoints).
CREATE TABLE leases (
    name          TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    until_ms      INTEGER NOT NULL
);
