package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parallelLog is a MemLog that says it can be read from several goroutines at once, and
// counts how many reads ran at once.
type parallelLog struct {
	*MemLog
	reads int

	mu                  sync.Mutex
	running, maxRunning int
}

func (p *parallelLog) ParallelReads() int { return p.reads }

func (p *parallelLog) ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error) {
	p.mu.Lock()
	p.running++
	p.maxRunning = max(p.maxRunning, p.running)
	p.mu.Unlock()
	defer func() { p.mu.Lock(); p.running--; p.mu.Unlock() }()
	return p.MemLog.ReadEvents(ctx, after, limit)
}

// gatedLog calls gate before each read.
type gatedLog struct {
	*MemLog
	gate func(ctx context.Context, after int64)
}

func (g *gatedLog) ParallelReads() int { return 2 }

func (g *gatedLog) ReadEvents(ctx context.Context, after int64, limit int) ([]Event, error) {
	g.gate(ctx, after)
	return g.MemLog.ReadEvents(ctx, after, limit)
}

// storedLog is a parallelLog that is also a StoredReader, as grants/sqlstore is: the
// evidence of each event comes back as the text json.Marshal writes for it when that text is
// canonical (CanonicalEvidence), and decoded otherwise.
type storedLog struct {
	*parallelLog
	stored, asText atomic.Int64 // events read through ReadStored; of them, with EvidenceJSON
}

func (s *storedLog) ReadStored(ctx context.Context, after int64, limit int, buf []StoredEvent) ([]StoredEvent, error) {
	page, err := s.parallelLog.ReadEvents(ctx, after, limit)
	if err != nil {
		return buf[:0], err
	}
	buf = buf[:0]
	for _, e := range page {
		se := StoredEvent{Event: e}
		if len(e.Evidence) > 0 {
			b, err := json.Marshal(e.Evidence)
			if err != nil {
				return buf, err
			}
			if CanonicalEvidence(string(b)) {
				se.Evidence, se.EvidenceJSON = nil, string(b)
				s.asText.Add(1)
			}
		}
		s.stored.Add(1)
		buf = append(buf, se)
	}
	return buf, nil
}

// verifyBoth verifies m one row after the other (a plain MemLog) and in parallel chunks,
// through ReadEvents and through ReadStored, and fails unless all give the same Result, to
// the word.
func verifyBoth(t *testing.T, m *MemLog, opts VerifyOptions, reads, chunkPages int) Result {
	t.Helper()
	pub := PublicKeyOf(testKey())
	want, err := Verify(t.Context(), m, pub, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	opts.chunkPages = chunkPages
	p := &parallelLog{MemLog: m, reads: reads}
	got, err := Verify(t.Context(), p, pub, opts)
	if err != nil {
		t.Fatalf("parallel Verify: %v", err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("parallel Verify (reads %d, chunks of %d pages of %d) differs (-one by one +parallel):\n%s", reads, chunkPages, opts.PageSize, d)
	}
	if p.running != 0 {
		t.Errorf("%d reads still running after Verify returned", p.running)
	}
	sl := &storedLog{parallelLog: &parallelLog{MemLog: m, reads: reads}}
	stored, err := Verify(t.Context(), sl, pub, opts)
	if err != nil {
		t.Fatalf("parallel Verify through ReadStored: %v", err)
	}
	if d := cmp.Diff(want, stored); d != "" {
		t.Fatalf("parallel Verify through ReadStored (reads %d, chunks of %d pages of %d) differs (-one by one +parallel):\n%s", reads, chunkPages, opts.PageSize, d)
	}
	if sl.running != 0 {
		t.Errorf("%d reads still running after Verify returned", sl.running)
	}
	return got
}

// TestVerifyParallelReadsStored: an intact log is checked through ReadStored, every event of
// it, and the evidence of every event that has some is hashed as its stored text.
func TestVerifyParallelReadsStored(t *testing.T) {
	t.Parallel()
	m := buildLog(t, 3000, 100)
	withEvidence := int64(0)
	for _, e := range m.Events {
		if len(e.Evidence) > 0 {
			withEvidence++
		}
	}
	sl := &storedLog{parallelLog: &parallelLog{MemLog: m, reads: 2}}
	opts := VerifyOptions{PageSize: 50, RequireCheckpoint: true, CheckpointEvery: 100, chunkPages: 2}
	res, err := Verify(t.Context(), sl, PublicKeyOf(testKey()), opts)
	if err != nil || !res.OK || res.Events != 3000 {
		t.Fatalf("Verify = %s, %v", res, err)
	}
	if runtime.GOMAXPROCS(0) == 1 {
		t.Skip("one core: Verify reads row by row")
	}
	if got := sl.stored.Load(); got != 3000 {
		t.Errorf("%d events read through ReadStored, want all 3000", got)
	}
	if got := sl.asText.Load(); withEvidence == 0 || got != withEvidence {
		t.Errorf("%d events with evidence as text, want the %d that have evidence", got, withEvidence)
	}
}

// TestCanonicalEvidence: CanonicalEvidence accepts exactly the texts that are the canonical
// encoding of the map they denote. For random texts built from pieces that make them
// almost canonical, every accepted one decodes (encoding/json) to a map whose canonical
// encoding is that very text.
func TestCanonicalEvidence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{`{"a":"1"}`, true},
		{`{"a":"1","b":""}`, true},
		{`{"":"x","a":"y"}`, true},
		{`{"caf\u00e9":"1"}`, false},
		{`{"café":"日本 😀"}`, true},
		{`{"a":"<&>"}`, true},
		{`{}`, false},
		{``, false},
		{`{"b":"1","a":"2"}`, false}, // not sorted
		{`{"a":"1","a":"2"}`, false}, // duplicate key
		{`{"a":"1",}`, false},
		{`{"a":"1"} `, false},
		{`{ "a":"1"}`, false},
		{`{"a": "1"}`, false},
		{`{"a":1}`, false},
		{`{"a":"x\"y"}`, false},
		{`{"a":"x\ny"}`, false},
		{"{\"a\":\"x\ny\"}", false},
		{"{\"a\":\"x\x1fy\"}", false},
		{"{\"a\":\"\u2028\"}", false},
		{"{\"a\":\"\u2029\"}", false},
		{"{\"a\":\"\xff\"}", false},
		{"{\"\xc3\":\"1\"}", false},
		{`{"a":"1""b":"2"}`, false},
		{`{"a""1"}`, false},
		{`{"a":"1"`, false},
		{`{"a`, false},
	} {
		if got := CanonicalEvidence(tc.s); got != tc.want {
			t.Errorf("CanonicalEvidence(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
	pieces := []string{`{`, `}`, `"`, `:`, `,`, `a`, `b`, `ab`, `é`, "\u2028", "\x1f", `\`, `\"`, "\xff", ` `, `1`}
	rng := rand.New(rand.NewPCG(16, 5))
	accepted := 0
	for range 200000 {
		var b []byte
		switch rng.IntN(2) {
		case 0: // pieces anywhere
			for range 1 + rng.IntN(12) {
				b = append(b, pieces[rng.IntN(len(pieces))]...)
			}
		default: // an object of a few entries made of pieces
			b = append(b, '{')
			for i := range 1 + rng.IntN(3) {
				if i > 0 {
					b = append(b, ',')
				}
				for range 2 {
					b = append(b, '"')
					for range rng.IntN(3) {
						b = append(b, pieces[5+rng.IntN(len(pieces)-5)]...)
					}
					b = append(b, '"', ':')
				}
				b = b[:len(b)-1]
			}
			b = append(b, '}')
		}
		s := string(b)
		if !CanonicalEvidence(s) {
			continue
		}
		accepted++
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("CanonicalEvidence(%q) = true, but it is not a JSON object of strings: %v", s, err)
		}
		w := encoder{strict: true}
		w.stringMap(m)
		if w.err != nil || len(m) == 0 || string(w.b) != s {
			t.Fatalf("CanonicalEvidence(%q) = true, but its map encodes to %q (%v)", s, w.b, w.err)
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d random texts were canonical: the generator no longer tests much", accepted)
	}
}

// TestVerifyParallelMatchesSequential: every tamper probe gives the same verdict, first bad
// seq, detail and counts whether the log is checked row after row or in parallel chunks, for
// chunk and page sizes that put the damage anywhere in a chunk, at its start or across two.
func TestVerifyParallelMatchesSequential(t *testing.T) {
	t.Parallel()
	base := newProbeLog(t)
	for _, p := range probes() {
		for _, pageSize := range []int{1, 2, 4, 0} {
			for _, chunkPages := range []int{1, 2, 3} {
				t.Run(fmt.Sprintf("%s/page=%d/chunk=%d", p.name, pageSize, chunkPages), func(t *testing.T) {
					t.Parallel()
					m := cloneLog(base)
					if p.mutate != nil {
						p.mutate(t, m)
					}
					opts := p.opts
					opts.PageSize = pageSize
					for _, reads := range []int{2, 3} {
						verifyBoth(t, m, opts, reads, chunkPages)
					}
				})
			}
		}
	}
}

// TestVerifyParallelRandomTamper: random edits, deletions, swaps, duplicated rows and
// rewritten checkpoints anywhere in a 3,000-event log give the same Result both ways; and
// the intact log is read with reads running at once.
func TestVerifyParallelRandomTamper(t *testing.T) {
	t.Parallel()
	base := buildLog(t, 3000, 100)
	opts := VerifyOptions{PageSize: 50, RequireCheckpoint: true, CheckpointEvery: 100}
	res := verifyBoth(t, base, opts, 2, 2)
	if !res.OK || res.Events != 3000 || res.Checkpoints != 31 {
		t.Fatalf("intact log: %s", res)
	}
	if runtime.GOMAXPROCS(0) > 1 {
		// The first read waits until a read of the second chunk has begun: one row after
		// the other, that never happens (and the test hangs until its timeout).
		second := make(chan struct{})
		var once sync.Once
		g := &gatedLog{MemLog: base, gate: func(ctx context.Context, after int64) {
			switch {
			case after == 0:
				select {
				case <-second:
				case <-ctx.Done():
				}
			case after >= 100:
				once.Do(func() { close(second) })
			}
		}}
		o := opts
		o.chunkPages = 2 // chunks of 100 rows
		if res, err := Verify(t.Context(), g, PublicKeyOf(testKey()), o); err != nil || !res.OK {
			t.Fatalf("gated Verify: %s, %v", res, err)
		}
	}
	rng := rand.New(rand.NewPCG(5, 16))
	for i := range 60 {
		m := cloneLog(base)
		seq := 1 + rng.Int64N(3000)
		kind := rng.IntN(6)
		switch kind {
		case 0:
			at(t, m, seq).Reason = "edited"
		case 1:
			to := min(seq+rng.Int64N(5), 3000)
			deleteSeqs(t, m, seq, to)
		case 2:
			other := 1 + rng.Int64N(3000)
			if other != seq {
				swapContents(t, m, seq, other)
			}
		case 3:
			m.Events = slices.Insert(m.Events, int(seq), m.Events[seq-1])
		case 4:
			m.Checkpoints[rng.IntN(len(m.Checkpoints))].Hash[0] ^= 1
		case 5:
			// A consistent rewrite from seq on: every hash recomputed.
			at(t, m, seq).Reason = "rewritten"
			prev := Genesis
			if seq > 1 {
				prev = at(t, m, seq-1).Hash
			}
			for s := seq; s <= 3000; s++ {
				e := at(t, m, s)
				if err := Seal(prev, e); err != nil {
					t.Fatal(err)
				}
				prev = e.Hash
			}
		}
		t.Run(fmt.Sprintf("%d-kind%d-seq%d", i, kind, seq), func(t *testing.T) {
			for _, chunkPages := range []int{1, 3} {
				// A swap with itself, or a duplicated row at a page boundary (a Reader pages
				// by seq > after), leaves nothing to see.
				if got := verifyBoth(t, m, opts, 2, chunkPages); got.OK && kind != 2 && kind != 3 {
					t.Errorf("tampered log verifies: %s", got)
				}
			}
		})
	}
}

// evidenceTextLog is a StoredReader that returns, for one seq, evidence text that is not
// canonical but makes the event's encoding that of another event.
type evidenceTextLog struct {
	*parallelLog
	seq  int64
	text string
}

func (l *evidenceTextLog) ReadStored(ctx context.Context, after int64, limit int, buf []StoredEvent) ([]StoredEvent, error) {
	page, err := l.parallelLog.ReadEvents(ctx, after, limit)
	buf = buf[:0]
	for _, e := range page {
		se := StoredEvent{Event: e}
		if e.Seq == l.seq {
			se.Evidence, se.EvidenceJSON = nil, l.text
		}
		buf = append(buf, se)
	}
	return buf, err
}

// TestVerifyStoredChecksEvidenceText: evidence text is hashed as it is only when it is
// canonical. Text that carries another field after the object (what a store reading a
// column an attacker wrote could pass on, were it not checked) would hash to the genuine
// event whose grant id was blanked; the row is checked again through ReadEvents instead,
// which sees the edit.
func TestVerifyStoredChecksEvidenceText(t *testing.T) {
	t.Parallel()
	m := buildLog(t, 300, 100)
	const seq = 151
	e := at(t, m, seq)
	if e.GrantID == "" || len(e.Evidence) == 0 {
		t.Fatalf("seq %d: want an event with a grant id and evidence, have %+v", seq, e)
	}
	w := encoder{strict: true}
	w.stringMap(e.Evidence)
	text := string(w.b) + `,"grant_id":` + jsonString(e.GrantID)
	e.GrantID = "" // the edit: ReadEvents returns the event without its grant id
	opts := VerifyOptions{PageSize: 10, RequireCheckpoint: true, chunkPages: 2}
	pub := PublicKeyOf(testKey())
	want, err := Verify(t.Context(), m, pub, opts)
	if err != nil || want.OK {
		t.Fatalf("one by one: %s, %v; want damage", want, err)
	}
	got, err := Verify(t.Context(), &evidenceTextLog{parallelLog: &parallelLog{MemLog: m, reads: 2}, seq: seq, text: text}, pub, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("through ReadStored (-one by one +stored):\n%s", d)
	}
}

func jsonString(s string) string {
	w := encoder{strict: true}
	w.str("test", s)
	return string(w.b)
}
