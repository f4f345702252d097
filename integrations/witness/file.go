// Package witness publishes signed audit checkpoints to witnesses outside the database: an
// append-only JSON-lines file (File) and an HTTPS endpoint (HTTP). Both implement
// grants.Witness; docs/audit.md explains why and the HTTP protocol.
package witness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// maxLine bounds one line of a witness file; a checkpoint's JSON is about 250 bytes.
const maxLine = 64 << 10

// File is an append-only JSON-lines file of checkpoints, one audit.Checkpoint JSON object per
// line. Each Publish appends one line with O_APPEND and fsyncs the file before returning; a
// new file is created 0600 and its directory fsynced too. Put it on another volume than the
// database (another machine's mount, a WORM volume): a witness the database's attacker can
// edit proves nothing.
type File struct {
	path string
	mu   sync.Mutex // one append at a time from this process
}

var _ grants.Witness = (*File)(nil)

// NewFile returns the file witness at path (made absolute). The file is created on the first
// Publish; its directory must exist.
func NewFile(path string) (*File, error) {
	if path == "" {
		return nil, errors.New("file witness: a path is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("file witness %s: %w", path, err)
	}
	return &File{path: abs}, nil
}

// Name is "file " and the path.
func (f *File) Name() string { return "file " + f.path }

// Publish appends c as one line and fsyncs. A previous line torn by a crash (no trailing
// newline) is closed with a newline first, so the new line stays readable.
func (f *File) Publish(ctx context.Context, c audit.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	line = append(line, '\n')
	f.mu.Lock()
	defer f.mu.Unlock()
	_, statErr := os.Stat(f.path)
	created := errors.Is(statErr, os.ErrNotExist)
	fh, err := os.OpenFile(f.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("%s: open: %w", f.Name(), err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	if st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := fh.ReadAt(last, st.Size()-1); err != nil {
			return fmt.Errorf("%s: read last byte: %w", f.Name(), err)
		}
		if last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if _, err := fh.Write(line); err != nil {
		return fmt.Errorf("%s: append checkpoint seq %d: %w", f.Name(), c.Seq, err)
	}
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("%s: fsync: %w", f.Name(), err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", f.Name(), err)
	}
	if created {
		if err := syncDir(filepath.Dir(f.path)); err != nil {
			return fmt.Errorf("%s: fsync directory: %w", f.Name(), err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Checkpoints reads every line as ReadJSONLines does (a torn line is skipped and reported
// with an error wrapping grants.ErrWitnessIncomplete). A file that does not exist holds no
// checkpoints.
func (f *File) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	defer fh.Close()
	return ReadJSONLines(ctx, fh, f.Name())
}

// ReadJSONLines reads checkpoints written one JSON object per line, as File writes and as
// an HTTP witness may answer; name is the witness's name for errors. Blank lines are
// skipped. A line that stops in the middle of its JSON object (a write torn by a crash;
// the next write starts on a new line) is skipped and reported: the checkpoints read are
// returned with an error wrapping grants.ErrWitnessIncomplete that names the lines. Any
// other line that is not a checkpoint is an error naming its line number, with no result.
func ReadJSONLines(ctx context.Context, r io.Reader, name string) ([]audit.Checkpoint, error) {
	br := bufio.NewReaderSize(r, 4096)
	var out []audit.Checkpoint
	var torn []string
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: line %d: %w", name, n, err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var c audit.Checkpoint
		if perr := json.Unmarshal(line, &c); perr != nil {
			var se *json.SyntaxError
			if errors.As(perr, &se) && strings.Contains(se.Error(), "unexpected end of JSON input") {
				torn = append(torn, fmt.Sprintf("line %d (%d bytes)", n, len(line)))
				continue
			}
			return nil, fmt.Errorf("%s: line %d is not a checkpoint: %v", name, n, perr)
		}
		out = append(out, c)
	}
	if len(torn) > 0 {
		return out, fmt.Errorf("%s: skipped %s: a write torn by a crash (the JSON object stops before its end): %w",
			name, strings.Join(torn, ", "), grants.ErrWitnessIncomplete)
	}
	return out, nil
}

// readLine reads one line without its newline; io.EOF means the line had no newline.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}
