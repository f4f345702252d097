-- Durable cursor of each audit sink (audit.sinks[] of kind https or s3): the seq of the last
-- event delivered to it, so that a sink that was down catches up from where it stopped. A
-- file sink keeps no row here: its own last line is its cursor.
CREATE TABLE sink_cursors (
    name          TEXT COLLATE "C" PRIMARY KEY,
    seq           BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);
