package audit

import (
	"crypto/sha256"
	"fmt"
	"sync"
)

// Next returns the chain hash of e given the hash of the event before it:
//
//	SHA-256(prev[:] || Canonical(e))
//
// This formula is the contract of the tamper-evident log (README.md, "Tamper-evident log"). prev is
// Genesis for the event with seq 1. e.PrevHash and e.Hash are ignored, because Canonical
// excludes them. Next fails only when Canonical does (invalid UTF-8, zero or out-of-range time).
// It does not allocate for typical events.
func Next(prev Hash, e Event) (Hash, error) {
	h := hasherPool.Get().(*hasher)
	sum, err := h.hash(prev, &e)
	if cap(h.w.b) <= 64<<10 { // let an unusually large buffer go
		hasherPool.Put(h)
	}
	if err != nil {
		return Hash{}, fmt.Errorf("audit chain seq %d: %w", e.Seq, err)
	}
	return sum, nil
}

// hasherPool keeps Next from allocating: the encoder's buffer would escape to the heap.
var hasherPool = sync.Pool{New: func() any { return &hasher{w: encoder{b: make([]byte, 0, 1024)}} }}

// Seal sets e.PrevHash to prev and e.Hash to Next(prev, *e). The store calls it inside the
// transaction that appends e, after assigning e.Seq, with prev the hash of the event at
// e.Seq-1 (Genesis for seq 1). On error e is left unchanged.
func Seal(prev Hash, e *Event) error {
	h, err := Next(prev, *e)
	if err != nil {
		return err
	}
	e.PrevHash = prev
	e.Hash = h
	return nil
}

// SealEvidence is Seal that also returns e's evidence as the chain hashed it: the evidence
// object of Canonical(*e), "" when e has none. For evidence whose strings hold no '<', '>'
// or '&' (which encoding/json escapes and the canonical form does not) that is json.Marshal
// of the map, byte for byte, so a store that keeps evidence as JSON need not encode it a
// second time (the session proxy appends thousands of events a second).
func SealEvidence(prev Hash, e *Event) (string, error) {
	h := hasherPool.Get().(*hasher)
	sum, err := h.hash(prev, e)
	var ev string
	if err == nil && h.w.evEnd > h.w.evStart {
		ev = string(h.w.b[h.w.evStart:h.w.evEnd])
	}
	if cap(h.w.b) <= 64<<10 {
		hasherPool.Put(h)
	}
	if err != nil {
		return "", fmt.Errorf("audit chain seq %d: %w", e.Seq, err)
	}
	e.PrevHash = prev
	e.Hash = sum
	return ev, nil
}

// hasher recomputes chain hashes with one reusable buffer; Verify's inner loop.
type hasher struct {
	w encoder
}

// hash returns SHA-256(prev || Canonical(*e)) and the canonical encoding error, if any.
func (h *hasher) hash(prev Hash, e *Event) (Hash, error) {
	h.w.strict = true
	h.w.err = nil
	h.w.b = append(h.w.b[:0], prev[:]...)
	h.w.event(e, false)
	if h.w.err != nil {
		return Hash{}, h.w.err
	}
	return sha256.Sum256(h.w.b), nil
}
