package audit

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// ParallelReader is an optional capability of a Reader: ReadEvents may be called from several
// goroutines at once, and a call returns fewer than limit events only when there are no more
// after the ones it returns (so that pages are the same whoever reads them). Verify then
// checks the log in chunks on several cores. grants/sqlstore implements it.
type ParallelReader interface {
	Reader
	// ParallelReads is how many ReadEvents calls may usefully run at once (connections).
	ParallelReads() int
}

// defaultChunkPages is the number of pages in a chunk of the parallel check.
const defaultChunkPages = 8

// parallelOutcome is how the parallel phase ended.
type parallelOutcome int

const (
	parallelResume parallelOutcome = iota // check on, one row at a time, after v.res.LastSeq
	parallelDamage                        // v.res holds the damage
	parallelEnd                           // every row was read and checked: finish
)

// chunkResult is what a worker found in the rows (from, from+size] of the log.
type chunkResult struct {
	clean bool  // every row read links, hashes and follows the one before it
	err   error // a read failed (the rows are then checked again one by one)
	n     int64 // rows read; the last has seq from+n
	short bool  // the log ended before the chunk did (a read came back empty or short)
	start Hash  // the first row's prev_hash: the chunk holds if it is the head before it
	end   Hash  // the chain hash at the last row
	heads map[int64]Hash
}

// parallel checks the log in chunks of whole pages on workers goroutines, each chunk from the
// prev_hash its first row claims, and then, in seq order here, ties each chunk to the one
// before (its first row's prev_hash must be the hash the chunk before ends with) and runs
// the checkpoint and witness checks at their seqs with the hashes the workers recorded
// there. For an intact log that is exactly what checking row after row does. At the first
// chunk that is not clean, not tied, or could not be read, it stops with v at the end of the
// last good chunk (a page boundary, as reading page after page from the start would have it)
// and Verify checks on from there one row at a time, so that damage is found and named
// exactly as without this phase.
func (v *verifier) parallel(ctx context.Context, r Reader, workers int) (parallelOutcome, error) {
	pages := v.opts.chunkPages
	if pages <= 0 {
		pages = defaultChunkPages
	}
	size := int64(v.opts.PageSize) * int64(pages)
	var need []int64 // the seqs where a checkpoint or witness wants the chain hash
	for _, c := range v.cps[v.next:] {
		need = append(need, c.Seq)
	}
	for _, w := range v.wcps[v.wnext:] {
		need = append(need, w.Seq)
	}
	slices.Sort(need)
	need = slices.Compact(need)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // no read is left running when Verify returns
	defer cancel()
	// Chunk k is handed out after chunk k-workers-1 was tied: a bounded window ahead.
	window := make(chan struct{}, workers+1)
	jobs := make(chan int64)
	type done struct {
		k int64
		r chunkResult
	}
	results := make(chan done, workers+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		for k := int64(0); ; k++ {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hasher{w: encoder{b: make([]byte, 0, 1024)}}
			var buf []StoredEvent // the worker's page, reused
			for k := range jobs {
				res := checkChunk(ctx, r, &h, &buf, k*size, size, v.opts.PageSize, need)
				select {
				case results <- done{k, res}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	pending := map[int64]chunkResult{}
	for k := int64(0); ; k++ {
		res, ok := pending[k]
		for !ok {
			select {
			case d := <-results:
				pending[d.k] = d.r
			case <-ctx.Done():
				return parallelResume, nil // the loop after reports ctx's end
			}
			res, ok = pending[k]
		}
		delete(pending, k)
		<-window
		from := k * size
		if res.err != nil || !res.clean || v.res.LastSeq != from {
			return parallelResume, nil
		}
		if res.n == 0 {
			return parallelEnd, nil // the chunk before ended on a page boundary at the end
		}
		if res.start != v.res.Head {
			return parallelResume, nil
		}
		base := v.res.Events
		i, _ := slices.BinarySearch(need, from+1)
		for ; i < len(need) && need[i] <= from+res.n; i++ {
			s := need[i]
			v.res.Events, v.res.LastSeq, v.res.Head = base+(s-from), s, res.heads[s]
			if v.checkpointsUpTo(s) {
				return parallelDamage, nil
			}
		}
		v.res.Events, v.res.LastSeq, v.res.Head = base+res.n, from+res.n, res.end
		if res.short {
			// The log ended inside the chunk (or a read came back short): the rows after,
			// if any were appended meanwhile, are read one page at a time from here.
			return parallelResume, nil
		}
	}
}

// checkChunk reads the rows (from, from+size] in pages of pageSize, as Verify reads them,
// and checks that they follow each other, link and hash, from the prev_hash the first one
// claims. It records the chain hash at each seq of need in the chunk. Pages are read into
// *buf (through StoredReader when r has it).
func checkChunk(ctx context.Context, r Reader, h *hasher, buf *[]StoredEvent, from, size int64, pageSize int, need []int64) chunkResult {
	res := chunkResult{clean: true}
	var head Hash
	last := from
	ni, _ := slices.BinarySearch(need, from+1) // need[ni] is the next seq to record at
	for last < from+size {
		page, err := readStored(ctx, r, last, int(min(int64(pageSize), from+size-last)), *buf)
		*buf = page
		if err != nil {
			res.err = fmt.Errorf("read events after seq %d: %w", last, err)
			return res
		}
		for i := range page {
			e := &page[i]
			if e.Seq != last+1 || e.Seq > from+size {
				res.clean = false
				return res
			}
			if last == from {
				res.start, head = e.PrevHash, e.PrevHash
			}
			if e.PrevHash != head {
				res.clean = false
				return res
			}
			sum, err := h.hashStored(head, e)
			if err != nil || sum != e.Hash {
				res.clean = false
				return res
			}
			head, last = sum, e.Seq
			if ni < len(need) && need[ni] == last {
				if res.heads == nil {
					res.heads = map[int64]Hash{}
				}
				res.heads[last] = sum
				ni++
			}
		}
		res.n, res.end = last-from, head
		if len(page) < pageSize && last < from+size {
			res.short = true
			return res
		}
	}
	return res
}
