package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// Get returns the value of k as of lsn: the newest image at or below lsn
// with every later record up to lsn replayed on it. The lsn must be between
// the GC cut-off and the last record LSN. A key without any value at or
// below lsn is ErrKeyNotFound. The returned slice is the caller's.
func (tl *Timeline) Get(ctx context.Context, k key.Key, lsn pgdata.LSN) ([]byte, error) {
	b, err := tl.GetReadOnly(ctx, k, lsn)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// GetReadOnly is Get without the copy: the value it returns may be the
// page cache's and must not be modified (the cache never modifies it
// either: a newer version replaces it). In a batch read (WithBatchRead)
// it may be a layer file's memory, valid until the batch's next read or
// its end. The page service sends pages
// this way: a copy of a page the CPU's caches do not hold cost a sixth
// of its CPU serving random reads.
func (tl *Timeline) GetReadOnly(ctx context.Context, k key.Key, lsn pgdata.LSN) ([]byte, error) {
	return retryRemoved(func() ([]byte, error) { return tl.get(ctx, k, lsn) })
}

// batchKey is the context key of WithBatchRead's layer.Cursors.
type batchKey struct{}

// WithBatchRead returns a context in which the reads of Get and
// GetReadOnly share layer file iterators (layer.Cursors): a run of keys
// read in ascending order, such as the consecutive blocks of one page
// request, visits each block of a layer file once instead of once a
// key. The values read are the same, but those of GetReadOnly are only
// valid until the next read in the context (or end), and they do not go
// into the page cache: a scan's pages would push out those of point
// reads. With scan, the run is part of a scan, which reads each block
// once: the layer files' blocks bypass the block cache too
// (layer.Cursors.Scan). The reads in the context must be made one after
// another, not concurrently, and end must be called once they are done:
// until then the layer files read stay open and cannot be removed. end
// returns the first error of closing the iterators.
func WithBatchRead(ctx context.Context, scan bool) (_ context.Context, end func() error) {
	cur := &layer.Cursors{Scan: scan}
	return context.WithValue(ctx, batchKey{}, cur), cur.Close
}

// batchOf is the ctx's cursors of WithBatchRead, or nil.
func batchOf(ctx context.Context) *layer.Cursors {
	cur, _ := ctx.Value(batchKey{}).(*layer.Cursors)
	return cur
}

// maxReadAttempts bounds the restarts of a read whose layers keep being
// removed under it.
const maxReadAttempts = 5

// retryRemoved runs read again while it fails because a compaction or GC
// removed a layer between taking the layer map and reading the layer: the
// next attempt reads the new map.
func retryRemoved(read func() ([]byte, error)) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		page, err := read()
		if !errors.Is(err, layer.ErrRemoved) || attempt == maxReadAttempts {
			return page, err
		}
	}
}

// Pending is a value whose redo runs in the background: GetLater's answer
// for a value that needs redo, so that a batch read goes on to the next
// keys meanwhile.
type Pending struct {
	done chan struct{}
	page []byte
	err  error
}

// Wait returns the value once its redo is done. It may be called more
// than once, from any goroutine.
func (p *Pending) Wait() ([]byte, error) {
	<-p.done
	return p.page, p.err
}

// GetLater is GetReadOnly for a batch read that does not wait for redo:
// a value that needs redo comes back as a Pending, its base image and
// records copied (in a batch read they are a layer file's memory), and
// its redo started on another goroutine; any other value comes back at
// once, as GetReadOnly's. The redo processes then rebuild one key's page
// while the reader collects the next key's history, and requests to
// them are pipelined instead of made one round trip at a time.
func (tl *Timeline) GetLater(ctx context.Context, k key.Key, lsn pgdata.LSN) (page []byte, later *Pending, err error) {
	for attempt := 1; ; attempt++ {
		page, later, err = tl.read(ctx, k, lsn, true)
		if !errors.Is(err, layer.ErrRemoved) || attempt == maxReadAttempts {
			return page, later, err
		}
	}
}

func (tl *Timeline) get(ctx context.Context, k key.Key, lsn pgdata.LSN) ([]byte, error) {
	page, _, err := tl.read(ctx, k, lsn, false)
	return page, err
}

// read is get; with later, a value that needs redo is rebuilt on another
// goroutine and returned as a Pending (GetLater).
func (tl *Timeline) read(ctx context.Context, k key.Key, lsn pgdata.LSN, later bool) ([]byte, *Pending, error) {
	v := tl.view()
	if lsn > v.last {
		return nil, nil, fmt.Errorf("get %v at %v on timeline %s (last record %v): %w", k, lsn, tl.id, v.last, ErrLSNNotReached)
	}
	// Checked against the same view that is read: a GC after this point
	// cannot take layers the read needs out of it.
	if lsn < v.gcCutoff {
		return nil, nil, fmt.Errorf("get %v at %v on timeline %s (GC cut-off %v): %w", k, lsn, tl.id, v.gcCutoff, ErrBelowGCCutoff)
	}
	repo := tl.tenant.repo
	ck := cacheKey{tl.tenant.id, tl.id, k}
	cLSN, cPage, cached := repo.cache.get(ck, lsn)
	var floor pgdata.LSN
	if cached {
		floor = cLSN + 1
	}
	var st layer.ReconstructState
	batch := batchOf(ctx)
	if err := tl.collect(v, k, lsn, floor, &st, batch); err != nil {
		return nil, nil, err
	}
	if !st.Complete && cached {
		st.Image, st.ImageLSN, st.Complete = cPage, cLSN, true
	}
	finish := func(st *layer.ReconstructState) ([]byte, error) {
		page, err := tl.materialize(ctx, k, lsn, st)
		if err != nil {
			return nil, err
		}
		if batch == nil {
			// A batch's pages are a scan's: they would push the pages of
			// point reads out of the cache, and may be the layers' memory.
			repo.cache.put(ck, lsn, page)
		}
		return page, nil
	}
	if !later || len(st.Records) == 0 {
		page, err := finish(&st)
		return page, nil, err
	}
	own := cloneState(&st)
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.page, p.err = finish(own)
	}()
	return nil, p, nil
}

// cloneState copies st's image and records out of the memory they point
// into (a batch read's layer blocks, valid until its next read).
func cloneState(st *layer.ReconstructState) *layer.ReconstructState {
	n := len(st.Image)
	for _, r := range st.Records {
		n += len(r.Value.Data)
	}
	buf := make([]byte, 0, n)
	own := *st
	if st.Image != nil {
		buf = append(buf, st.Image...)
		own.Image = buf[:len(st.Image):len(st.Image)]
	}
	own.Records = slices.Clone(st.Records)
	for i := range own.Records {
		d := own.Records[i].Value.Data
		if d == nil {
			continue
		}
		start := len(buf)
		buf = append(buf, d...)
		own.Records[i].Value.Data = buf[start:len(buf):len(buf)]
	}
	return &own
}

// reconstruct rebuilds k at lsn without the page cache, for image layers.
// The ancestors' compactions may remove layers under it.
func (tl *Timeline) reconstruct(ctx context.Context, k key.Key, lsn pgdata.LSN) ([]byte, error) {
	return retryRemoved(func() ([]byte, error) {
		var st layer.ReconstructState
		if err := tl.collect(tl.view(), k, lsn, 0, &st, nil); err != nil {
			return nil, err
		}
		return tl.materialize(ctx, k, lsn, &st)
	})
}

// materialize turns what collect found into the value: the image itself,
// or the records replayed by Redo.
func (tl *Timeline) materialize(ctx context.Context, k key.Key, lsn pgdata.LSN, st *layer.ReconstructState) ([]byte, error) {
	if !st.Found() {
		return nil, fmt.Errorf("get %v at %v on timeline %s: %w", k, lsn, tl.id, ErrKeyNotFound)
	}
	if len(st.Records) == 0 {
		return st.Image, nil
	}
	recs := slices.Clone(st.Records)
	slices.Reverse(recs) // oldest first
	page, err := tl.tenant.repo.redo.Apply(ctx, tl.tenant.id, k, st.Image, recs, lsn)
	if err != nil {
		return nil, fmt.Errorf("redo %v at %v on timeline %s (%d records): %w", k, lsn, tl.id, len(recs), err)
	}
	return page, nil
}

// collect gathers into st the values of k at or below lsn and above floor,
// newest first, until one initializes the page: from the in-memory layers,
// then the layer files of v (tl's view), then the ancestors' below the
// branch point. The layer files are read through cursors if not nil.
func (tl *Timeline) collect(v view, k key.Key, lsn, floor pgdata.LSN, st *layer.ReconstructState, cursors *layer.Cursors) error {
	end := lsn + 1
	for cur := tl; cur != nil; cur = cur.ancestor {
		if cur != tl {
			v = cur.view()
		}
		for _, m := range v.mems {
			done, next, err := visit(m, m.Desc().LSNs.Start, k, floor, end, st, nil)
			if err != nil || done {
				return err
			}
			end = next
		}
		for end > floor {
			l, lf, ok := v.files.Search(k, end)
			if !ok {
				break
			}
			done, next, err := visit(l, lf, k, floor, end, st, cursors)
			if err != nil || done {
				return err
			}
			end = next
		}
		if end <= floor || cur.ancestor == nil {
			return nil
		}
		end = min(end, cur.ancestorLSN+1)
	}
	return nil
}

// visit reads layer l's values of k in [max(from, floor), end) into st. done
// means the search is over: the page is complete, or the rest of its
// history is below floor (in the page cache); next is where to continue.
func visit(l layer.Layer, from pgdata.LSN, k key.Key, floor, end pgdata.LSN, st *layer.ReconstructState, cur *layer.Cursors) (done bool, next pgdata.LSN, err error) {
	d := l.Desc()
	if d.LSNs.Start >= end {
		return false, end, nil
	}
	from = max(from, floor)
	if d.LSNs.End <= from {
		return true, from, nil
	}
	if err := cur.Collect(l, k, layer.LSNRange{Start: from, End: end}, st); err != nil {
		return false, 0, err
	}
	return st.Complete || from <= floor && floor > 0, from, nil
}

// PutRelSize stores the size, in blocks, of one fork of a relation at lsn
// (visible at FinishWrite).
func (tl *Timeline) PutRelSize(rel pgdata.RelFileNode, fork pgdata.ForkNumber, lsn pgdata.LSN, blocks uint32) error {
	return tl.Put(key.RelSize(rel, fork), lsn, value.Size(blocks))
}

// RelSize returns the size, in blocks, of one fork of a relation at lsn;
// ErrKeyNotFound if the fork has no size at lsn.
func (tl *Timeline) RelSize(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber, lsn pgdata.LSN) (uint32, error) {
	k := key.RelSize(rel, fork)
	b, err := tl.Get(ctx, k, lsn)
	if err != nil {
		return 0, err
	}
	n, err := value.DecodeSize(b)
	if err != nil {
		return 0, fmt.Errorf("size of %v at %v on timeline %s: %w", k, lsn, tl.id, err)
	}
	return n, nil
}
