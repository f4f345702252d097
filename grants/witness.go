package grants

import (
	"context"
	"errors"

	"github.com/accessbroker/accessbroker/audit"
)

// Witness keeps a copy of every signed audit checkpoint outside the database, where someone
// who can write the database cannot reach it (another volume, another account). `audit
// verify --witness` reads the copies back and fails when the log is behind one of them.
// integrations/witness (file, HTTPS) and integrations/aws (S3 with Object Lock) implement it.
type Witness interface {
	// Name names the witness in logs, alerts, metrics and verify output, e.g.
	// "file /mnt/witness/checkpoints.jsonl"; it never contains a secret.
	Name() string
	// Publish stores c durably before returning nil. Publishing a checkpoint the witness
	// already holds is allowed (kept once or twice; both verify the same).
	Publish(ctx context.Context, c audit.Checkpoint) error
	// Checkpoints returns every checkpoint the witness holds, in the order it stores them.
	// When part of the store cannot be read (a torn last line after a crash), it returns what
	// it could read together with an error wrapping ErrWitnessIncomplete that says what was
	// skipped; any other error means nothing usable was read.
	Checkpoints(ctx context.Context) ([]audit.Checkpoint, error)
}

// ErrWitnessIncomplete marks a Witness.Checkpoints error that comes with a usable, partial
// result (see Witness).
var ErrWitnessIncomplete = errors.New("witness copy is incomplete")
