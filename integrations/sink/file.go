// Package sink streams audit events to the security team's tools: a JSON-lines file (File)
// and an HTTPS endpoint with HMAC-signed batches (HTTP). Both implement grants.Sink; the S3
// sink is integrations/aws's. docs/audit.md describes the formats and the HTTP protocol.
package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/accessbroker/accessbroker/audit"
	"github.com/accessbroker/accessbroker/grants"
)

// maxTailLine bounds the last line Tail reads back; an event is a few hundred bytes (a
// session statement up to a few KiB).
const maxTailLine = 1 << 20

// FileConfig configures a file sink.
type FileConfig struct {
	// Path is the JSON-lines file. Its directory must exist. Required.
	Path string
	// Format is how each event is written (one object per line). Default audit.EventJSON.
	Format audit.EventFormat
	// MaxBytes, when positive, rotates the file once it reaches this size: it is renamed to
	// Path + "." + the seq of its last event (20 digits) and a new file is started.
	MaxBytes int64
}

// File appends each event as one line to a file and fsyncs after every batch, so that what
// Deliver reported delivered survives a crash or a power loss. The file is its own cursor:
// after a restart Tail reads its last line, removes a line torn by a crash (it is written
// again), and the stream continues after the last whole line: no gap and no duplicate. A
// rotated file (MaxBytes) keeps the seq of its last line in its name, so that an empty new
// file continues after it.
//
// The process holds an exclusive lock (flock) on the file while it writes: a second process
// configured with the same path fails with an error saying so, instead of interleaving lines.
type File struct {
	path   string
	format audit.EventFormat
	max    int64

	mu   sync.Mutex
	fh   *os.File // open, locked, positioned at the end; nil until Tail or Deliver
	size int64
}

var (
	_ grants.Sink     = (*File)(nil)
	_ grants.SinkTail = (*File)(nil)
)

// NewFile returns the file sink of cfg (the path made absolute). Nothing is opened yet.
func NewFile(cfg FileConfig) (*File, error) {
	if cfg.Path == "" {
		return nil, errors.New("file sink: a path is required")
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("file sink %s: %w", cfg.Path, err)
	}
	if cfg.Format == "" {
		cfg.Format = audit.EventJSON
	}
	if _, err := audit.ParseEventFormat(string(cfg.Format)); err != nil {
		return nil, fmt.Errorf("file sink %s: %w", abs, err)
	}
	return &File{path: abs, format: cfg.Format, max: cfg.MaxBytes}, nil
}

// Name is "file " and the path.
func (f *File) Name() string { return "file " + f.path }

// Close releases the file and its lock.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fh == nil {
		return nil
	}
	err := f.fh.Close()
	f.fh = nil
	return err
}

// open opens (creating 0600, with its directory fsynced) and locks the file. f.mu is held.
func (f *File) open() error {
	if f.fh != nil {
		return nil
	}
	_, statErr := os.Stat(f.path)
	created := errors.Is(statErr, os.ErrNotExist)
	fh, err := os.OpenFile(f.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("%s: open: %w", f.Name(), err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%s: another process writes this file (it holds its lock); give each process its own path", f.Name())
		}
		return fmt.Errorf("%s: lock: %w", f.Name(), err)
	}
	if created {
		if err := syncDir(filepath.Dir(f.path)); err != nil {
			fh.Close()
			return fmt.Errorf("%s: fsync directory: %w", f.Name(), err)
		}
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	f.fh, f.size = fh, st.Size()
	return nil
}

// Tail implements grants.SinkTail: the seq and hash of the file's last whole line, after
// cutting off a torn one; an empty file continues after its newest rotated file.
func (f *File) Tail(ctx context.Context) (int64, audit.Hash, error) {
	if err := ctx.Err(); err != nil {
		return 0, audit.Hash{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.open(); err != nil {
		return 0, audit.Hash{}, err
	}
	line, keep, err := lastLine(f.fh, f.size)
	if err != nil {
		return 0, audit.Hash{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if keep < f.size {
		// A write torn by a crash: the batch it belonged to is delivered again.
		if err := f.fh.Truncate(keep); err != nil {
			return 0, audit.Hash{}, fmt.Errorf("%s: cut the torn last line: %w", f.Name(), err)
		}
		if err := f.fh.Sync(); err != nil {
			return 0, audit.Hash{}, fmt.Errorf("%s: fsync: %w", f.Name(), err)
		}
		f.size = keep
	}
	if line == nil {
		return f.rotatedTail()
	}
	seq, hash, err := f.format.Locate(line)
	if err != nil {
		return 0, audit.Hash{}, fmt.Errorf("%s: the last line is not an event in %s format: %w", f.Name(), f.format, err)
	}
	return seq, hash, nil
}

// rotatedTail is the last line of the newest rotated file, or nothing when there is none.
func (f *File) rotatedTail() (int64, audit.Hash, error) {
	matches, err := filepath.Glob(f.path + ".*")
	if err != nil {
		return 0, audit.Hash{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var rotated []string
	for _, m := range matches {
		if suffix := strings.TrimPrefix(m, f.path+"."); len(suffix) == 20 && strings.Trim(suffix, "0123456789") == "" {
			rotated = append(rotated, m)
		}
	}
	if len(rotated) == 0 {
		return 0, audit.Hash{}, nil
	}
	sort.Strings(rotated) // 20 digits: lexical order is numeric order
	newest := rotated[len(rotated)-1]
	fh, err := os.Open(newest)
	if err != nil {
		return 0, audit.Hash{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return 0, audit.Hash{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	line, _, err := lastLine(fh, st.Size())
	if err != nil || line == nil {
		return 0, audit.Hash{}, fmt.Errorf("%s: rotated file %s has no whole last line: %v", f.Name(), newest, err)
	}
	seq, hash, err := f.format.Locate(line)
	if err != nil {
		return 0, audit.Hash{}, fmt.Errorf("%s: rotated file %s: %w", f.Name(), newest, err)
	}
	return seq, hash, nil
}

// lastLine returns the last whole line of a file of size bytes (without its newline and
// surrounding blanks; nil when there is none) and the size to keep: size, or less when the
// file ends in a torn line (bytes after the last newline).
func lastLine(r io.ReaderAt, size int64) ([]byte, int64, error) {
	start := max(size-2*maxTailLine, 0)
	buf := make([]byte, size-start)
	if _, err := r.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("read: %w", err)
	}
	nl := bytes.LastIndexByte(buf, '\n')
	if nl < 0 {
		if start > 0 {
			return nil, 0, fmt.Errorf("no newline in the last %d bytes", len(buf))
		}
		return nil, 0, nil // one torn line and nothing else
	}
	keep := start + int64(nl) + 1
	whole := bytes.TrimRight(buf[:nl+1], " \t\r\n")
	if len(whole) == 0 {
		return nil, keep, nil
	}
	prev := bytes.LastIndexByte(whole, '\n')
	if prev < 0 && start > 0 {
		return nil, 0, fmt.Errorf("the last line is longer than %d bytes", maxTailLine)
	}
	return bytes.TrimSpace(whole[prev+1:]), keep, nil
}

// Deliver implements grants.Sink: it appends one line per event, fsyncs, then rotates when
// the file reached MaxBytes.
func (f *File) Deliver(ctx context.Context, events []audit.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, e := range events {
		line, err := f.format.Encode(e)
		if err != nil {
			return fmt.Errorf("%s: encode seq %d: %w", f.Name(), e.Seq, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.open(); err != nil {
		return err
	}
	n, err := f.fh.WriteAt(buf.Bytes(), f.size)
	f.size += int64(n)
	if err != nil {
		return fmt.Errorf("%s: append seq %d-%d: %w", f.Name(), events[0].Seq, events[len(events)-1].Seq, err)
	}
	if err := f.fh.Sync(); err != nil {
		return fmt.Errorf("%s: fsync: %w", f.Name(), err)
	}
	if f.max > 0 && f.size >= f.max {
		return f.rotate(events[len(events)-1].Seq)
	}
	return nil
}

// rotate renames the full file after its last seq and starts a new one. f.mu is held.
func (f *File) rotate(last int64) error {
	to := f.path + "." + fmt.Sprintf("%020d", last)
	if err := os.Rename(f.path, to); err != nil {
		return fmt.Errorf("%s: rotate to %s: %w", f.Name(), to, err)
	}
	f.fh.Close()
	f.fh = nil
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("%s: fsync directory after rotating: %w", f.Name(), err)
	}
	return f.open()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
