package repo

import (
	"fmt"
	"time"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// Put stores v as k's value at lsn. It becomes visible, with every other
// Put up to the same record, at FinishWrite. lsn must be after the last
// record LSN, and after any pending Put of the same key; v must be valid
// (value.ErrMalformed otherwise).
func (tl *Timeline) Put(k key.Key, lsn pgdata.LSN, v value.Value) error {
	if err := v.Validate(); err != nil {
		return fmt.Errorf("put %v at %v on timeline %s: %w", k, lsn, tl.id, err)
	}
	tl.writeMu.Lock()
	defer tl.writeMu.Unlock()
	last := tl.LastRecordLSN()
	if lsn <= last {
		return fmt.Errorf("put %v at %v on timeline %s, at or below the last record LSN %v: %w", k, lsn, tl.id, last, ErrLSNOrder)
	}
	if p, ok := tl.pendingLast[k]; ok && lsn <= p {
		return fmt.Errorf("put %v at %v on timeline %s after its pending value at %v: %w", k, lsn, tl.id, p, ErrLSNOrder)
	}
	tl.pending = append(tl.pending, pendingPut{k, lsn, v})
	tl.pendingLast[k] = lsn
	return nil
}

// FinishWrite makes every pending Put visible and advances the last record
// LSN to lsn (the end of the record just ingested) and the previous record
// LSN to prev (its start). When the open in-memory layer has reached the
// tenant's checkpoint distance, or the open layers of the repository half
// its InMemoryLayerLimit, it is frozen and a flush is requested; past the
// limit the writer flushes its frozen layers itself (throttle).
func (tl *Timeline) FinishWrite(lsn, prev pgdata.LSN) error {
	tl.writeMu.Lock()
	defer tl.writeMu.Unlock()
	last := tl.LastRecordLSN()
	if lsn < last {
		return fmt.Errorf("finish write at %v on timeline %s, below the last record LSN %v: %w", lsn, tl.id, last, ErrLSNOrder)
	}
	for _, p := range tl.pending {
		if p.lsn > lsn {
			return fmt.Errorf("finish write at %v on timeline %s with a pending put at %v: %w", lsn, tl.id, p.lsn, ErrLSNOrder)
		}
	}
	tl.mu.RLock()
	open := tl.open
	tl.mu.RUnlock()
	mem := &tl.tenant.repo.mem
	before := open.Size()
	err := tl.putPending(open)
	mem.open.Add(open.Size() - before)
	if err != nil {
		return err
	}
	clear(tl.pending)
	tl.pending = tl.pending[:0]
	clear(tl.pendingLast)

	tl.mu.Lock()
	tl.last, tl.prev = lsn, prev
	close(tl.lsnAdvanced)
	tl.lsnAdvanced = make(chan struct{})
	tl.mu.Unlock()

	if open.Size() >= tl.tenant.Config().CheckpointDistance || mem.open.Load() >= tl.tenant.repo.cfg.InMemoryLayerLimit/2 {
		tl.freezeLocked()
		tl.tenant.repo.requestFlush()
	}
	tl.throttle()
	return nil
}

// putPending adds the pending puts to the open layer.
func (tl *Timeline) putPending(open *layer.MemLayer) error {
	for _, p := range tl.pending {
		// Put checked the order, so this cannot fail unless the
		// timeline's invariants are broken.
		if err := open.Put(p.k, p.lsn, p.v); err != nil {
			return fmt.Errorf("timeline %s: %w", tl.id, err)
		}
	}
	return nil
}

// maxFrozenLayers is how many frozen layers may wait for the background
// flush before the writer flushes them itself, which slows ingest down to
// the speed of the disk instead of letting memory grow.
const maxFrozenLayers = 4

// throttle flushes the timeline's frozen layers in the writer's goroutine
// when the background flush has fallen behind: too many frozen layers, or
// in-memory layers at the repository's InMemoryLayerLimit. Without
// background flushing (a FlushInterval of zero) flushing is left to the
// caller. While the flush fails (a full disk) and the in-memory layers are
// at the limit, the writer waits and tries again, until the flush succeeds
// or the repository closes: ingest stops rather than memory grow, and goes
// on by itself once space is freed.
func (tl *Timeline) throttle() {
	repo := tl.tenant.repo
	tl.mu.RLock()
	n := len(tl.frozen)
	tl.mu.RUnlock()
	if n == 0 || repo.cfg.FlushInterval == 0 {
		return
	}
	if n < maxFrozenLayers && repo.mem.total() < repo.cfg.InMemoryLayerLimit {
		return
	}
	for wait := minFlushRetry; ; wait = min(2*wait, maxFlushRetry) {
		err := tl.flushFrozen(repo.ctx)
		if err == nil || repo.ctx.Err() != nil {
			return
		}
		// The values stay in memory and readable; the flush loop retries.
		full := repo.mem.total() >= repo.cfg.InMemoryLayerLimit
		tl.log.Error().Err(err).Bool("ingest_waits", full).Dur("retry_in", wait).Msg("flush by the writer")
		if !full {
			return
		}
		select {
		case <-repo.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// A writer whose flush fails with the in-memory layers at their limit
// tries again after minFlushRetry, then ever more slowly up to
// maxFlushRetry.
const (
	minFlushRetry = 100 * time.Millisecond
	maxFlushRetry = 5 * time.Second
)

// Freeze freezes the open in-memory layer at the last record LSN, so that
// the next flush writes it out. It does nothing if no record was ingested
// since the last freeze.
func (tl *Timeline) Freeze() {
	tl.writeMu.Lock()
	defer tl.writeMu.Unlock()
	tl.freezeLocked()
}

func (tl *Timeline) freezeLocked() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	start := tl.open.Desc().LSNs.Start
	if tl.last < start {
		return
	}
	// Pending puts are not in the open layer, so nothing in it is at or
	// after last+1 and Freeze cannot fail.
	if err := tl.open.Freeze(tl.last + 1); err != nil {
		tl.log.Error().Err(err).Msg("freeze in-memory layer")
		return
	}
	size := tl.open.Size()
	tl.tenant.repo.mem.open.Add(-size)
	tl.tenant.repo.mem.frozen.Add(size)
	tl.frozen = append(tl.frozen, frozenLayer{tl.open, tl.prev})
	tl.open = layer.NewMemLayer(tl.last+1, tl.tenant.repo.now())
}

// openLayerAge returns how long the open layer has been taking values, and
// whether it holds any.
func (tl *Timeline) openLayerAge() (time.Duration, bool) {
	tl.mu.RLock()
	open := tl.open
	tl.mu.RUnlock()
	return tl.tenant.repo.now().Sub(open.Created()), !open.Empty()
}
