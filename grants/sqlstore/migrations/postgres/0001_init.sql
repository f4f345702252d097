-- accessbroker schema v1 (PostgreSQL): the same tables, columns and indexes as
-- migrations/sqlite/0001_init.sql, so both dialects share one set of queries. Times are BIGINT
-- milliseconds since the Unix epoch, UTC; 0 means "not set". Nothing about a request or grant
-- is ever deleted. Identifiers and keys use the "C" collation so that ORDER BY id is bytewise,
-- as in SQLite, whatever the database's default collation.
--
-- The whole migration runs in one transaction under a per-schema advisory lock (see
-- sqlstore.migratePostgres), so replicas starting together apply it once.

CREATE TABLE requests (
    id            TEXT COLLATE "C" PRIMARY KEY,
    requester     TEXT NOT NULL,              -- JSON grants.Person
    slack_user    TEXT COLLATE "C" NOT NULL,
    resource      TEXT COLLATE "C" NOT NULL,
    duration_ms   BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    source        TEXT NOT NULL,
    state         TEXT NOT NULL,
    approvals     TEXT NOT NULL,              -- JSON []grants.Approval
    incident_id   TEXT COLLATE "C" NOT NULL,
    evidence      TEXT NOT NULL,              -- JSON map
    external_key  TEXT COLLATE "C" UNIQUE,    -- dedupe key; NULL when unset
    notify        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    decided_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX requests_state ON requests(state, created_at);
CREATE INDEX requests_slack_user ON requests(slack_user, created_at);

CREATE TABLE grants (
    id            TEXT COLLATE "C" PRIMARY KEY,
    request_id    TEXT COLLATE "C" NOT NULL,
    resource      TEXT COLLATE "C" NOT NULL,
    provider      TEXT NOT NULL,
    person        TEXT NOT NULL,              -- JSON grants.Person
    slack_user    TEXT COLLATE "C" NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    incident_id   TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT NOT NULL,
    revoke_cause  TEXT NOT NULL,
    handle        TEXT NOT NULL,              -- JSON grants.Handle (never a secret)
    handle_key    TEXT COLLATE "C" NOT NULL,
    attempts      INTEGER NOT NULL,
    due_at        BIGINT NOT NULL,
    last_error    TEXT NOT NULL,
    claimed_by    TEXT NOT NULL,
    claimed_to    BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX grants_due ON grants(due_at) WHERE state <> 'revoked';
CREATE INDEX grants_state ON grants(state, created_at);
CREATE INDEX grants_handle_key ON grants(handle_key) WHERE handle_key <> '' AND state <> 'revoked';
CREATE INDEX grants_incident ON grants(incident_id) WHERE incident_id <> '';
CREATE INDEX grants_slack_user ON grants(slack_user, created_at);
CREATE INDEX grants_request ON grants(request_id);

CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY,
    id            TEXT COLLATE "C" NOT NULL UNIQUE,
    time_ms       BIGINT NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT COLLATE "C" NOT NULL,
    actor_email   TEXT COLLATE "C" NOT NULL,
    action        TEXT COLLATE "C" NOT NULL,
    request_id    TEXT COLLATE "C" NOT NULL,
    grant_id      TEXT COLLATE "C" NOT NULL,
    resource      TEXT COLLATE "C" NOT NULL,
    reason        TEXT NOT NULL,
    evidence      TEXT NOT NULL,              -- JSON map, "" when empty
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    CHECK (seq > 0)
);
CREATE INDEX audit_time ON audit_events(time_ms);
CREATE INDEX audit_actor ON audit_events(actor_id, seq);
CREATE INDEX audit_actor_email ON audit_events(actor_email, seq);
CREATE INDEX audit_resource ON audit_events(resource, seq);
CREATE INDEX audit_action ON audit_events(action, seq);
CREATE INDEX audit_grant ON audit_events(grant_id, seq);
CREATE INDEX audit_request ON audit_events(request_id, seq);

CREATE TABLE audit_checkpoints (
    seq           BIGINT NOT NULL,
    hash          TEXT NOT NULL,
    time_ms       BIGINT NOT NULL,
    key_id        TEXT NOT NULL,
    signature     BYTEA NOT NULL,
    PRIMARY KEY (seq, time_ms)
);

-- The audit tables are append-only. Statement-level triggers refuse UPDATE, DELETE and
-- TRUNCATE even when no row would be touched. (A table owner or superuser can still disable
-- a trigger or drop the table: docs/postgres.md shows how to keep the broker's own role from
-- owning these tables.)
CREATE FUNCTION accessbroker_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION accessbroker_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION accessbroker_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION accessbroker_append_only();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION accessbroker_append_only();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION accessbroker_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION accessbroker_append_only();

-- Keys already acted on (webhook event ids, slash-command replays), kept for dedupe.
CREATE TABLE seen_keys (
    key           TEXT COLLATE "C" PRIMARY KEY,
    seen_at       BIGINT NOT NULL
);

-- Named leases for work that only one process may do at a time (weekly summary, checkpoints).
CREATE TABLE leases (
    name          TEXT COLLATE "C" PRIMARY KEY,
    holder        TEXT NOT NULL,
    until_ms      BIGINT NOT NULL
);
