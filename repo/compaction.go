package repo

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Compact does the timeline's compaction, if its thresholds are reached:
// flushed (L0) delta layers, which each span every key, are merged and
// rewritten as delta layers of key ranges; then key ranges with enough
// delta layers not yet covered by a newer image get image layers at the
// disk-consistent LSN, so that reads stop there and GC can drop what is
// below.
//
// Once ingest has been idle for the tenant's CompactionIdlePeriod, it
// also makes what was ingested readable without WAL redo, once per idle
// period: a large open in-memory layer is flushed, and every key that has
// no image at all gets one. A bulk load leaves fewer L0 layers than the
// compaction threshold and, once compacted, one delta per key range:
// without this, every read of the loaded data would replay its records.
func (tl *Timeline) Compact(ctx context.Context) error {
	conf := tl.tenant.Config()
	lsn, idle := tl.idle.check(tl.LastRecordLSN(), tl.tenant.repo.now(), time.Duration(conf.CompactionIdlePeriod))
	// Before compactMu: a flush holds flushMu, which is taken first.
	if idle {
		if err := tl.flushIfLarge(ctx, conf.CheckpointDistance/idleFlushFraction); err != nil {
			return fmt.Errorf("flush idle timeline %s: %w", tl.id, err)
		}
	}
	tl.compactMu.Lock()
	defer tl.compactMu.Unlock()
	if err := tl.compactL0(ctx); err != nil {
		return fmt.Errorf("compact timeline %s: %w", tl.id, err)
	}
	if err := tl.createImages(ctx, idle); err != nil {
		return fmt.Errorf("create images on timeline %s: %w", tl.id, err)
	}
	if idle {
		tl.idle.finished(lsn)
	}
	return nil
}

// idleFlushFraction: an idle timeline's open in-memory layer is flushed
// early if it holds at least this fraction of the checkpoint distance.
// A smaller one costs little to replay, and flushing it after each burst
// of a trickle of writes would multiply the L0 layers (and so the image
// rewrites that their compaction leads to).
const idleFlushFraction = 64

// ingestIdle follows a timeline's last record LSN from one compaction to
// the next, to tell when ingest has been idle for a while.
type ingestIdle struct {
	mu    sync.Mutex
	lsn   pgdata.LSN // the last record LSN last seen
	since time.Time  // when lsn was first seen
	done  pgdata.LSN // the LSN the last idle compaction finished at
	ran   bool       // whether one has finished
}

// check records the last record LSN as of now and reports whether ingest
// has been idle for period (period > 0) with no idle compaction finished
// at that LSN yet.
func (s *ingestIdle) check(last pgdata.LSN, now time.Time, period time.Duration) (pgdata.LSN, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last != s.lsn || s.since.IsZero() {
		s.lsn, s.since = last, now
	}
	if period <= 0 || now.Sub(s.since) < period {
		return last, false
	}
	return last, !s.ran || s.done != last
}

// finished records that an idle compaction finished at lsn.
func (s *ingestIdle) finished(lsn pgdata.LSN) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done, s.ran = lsn, true
}

// flushIfLarge flushes the open in-memory layer if it holds at least
// minSize bytes.
func (tl *Timeline) flushIfLarge(ctx context.Context, minSize int64) error {
	tl.mu.RLock()
	size := tl.open.Size()
	tl.mu.RUnlock()
	if size < max(minSize, 1) {
		return nil
	}
	return tl.Flush(ctx)
}

// compactL0 merges the L0 delta layers (at most max_open_layer_files of
// them, the oldest; see below for when) into delta layers of about the target size, each
// holding whole keys' histories for the same LSN range.
func (tl *Timeline) compactL0(ctx context.Context) error {
	conf := tl.tenant.Config()
	files := tl.files()
	var l0 []*layer.File
	for _, l := range files.Layers() {
		if l.Desc().IsL0() {
			l0 = append(l0, l.(*layer.File))
		}
	}
	// Every read goes through each L0 layer newer than its page's image:
	// with more of them than max_open_layer_files, reads would reopen
	// them for every page. So they are compacted once they reach half the
	// limit if that comes before the threshold, and the merge, which
	// holds every layer it reads open at once, takes no more than the
	// limit, the oldest first (their LSN ranges follow each other); the
	// rest wait for a later round.
	limit := tl.tenant.repo.env.FileStats().Limit
	threshold := conf.CompactionThreshold
	if limit >= 4 {
		threshold = min(threshold, limit/2)
	}
	if len(l0) < threshold || len(l0) < 2 {
		return nil
	}
	sort.Slice(l0, func(i, j int) bool { return l0[i].Desc().LSNs.Start < l0[j].Desc().LSNs.Start })
	if limit >= 2 && len(l0) > limit {
		l0 = l0[:limit]
	}
	lsns := layer.LSNRange{Start: l0[0].Desc().LSNs.Start, End: l0[len(l0)-1].Desc().LSNs.End}

	m, err := newMerger(l0)
	if err != nil {
		return err
	}
	defer m.close()
	env := tl.tenant.repo.env
	var out []*layer.File
	abort := func(w *layer.Writer, err error) error {
		if w != nil {
			w.Abort()
		}
		for _, f := range out {
			tl.removeUnlisted(f)
		}
		return err
	}
	var w *layer.Writer
	finish := func() error {
		f, err := w.Finish(layer.Desc{Kind: layer.Delta, Keys: key.Range{Start: w.FirstKey(), End: w.LastKey().Next()}, LSNs: lsns})
		w = nil
		if err != nil {
			return err
		}
		out = append(out, f)
		return nil
	}
	for m.next() {
		it := m.top()
		if w != nil && w.Size() >= conf.CompactionTargetSize && it.Key() != w.LastKey() {
			if err := finish(); err != nil {
				return abort(nil, err)
			}
			if err := ctx.Err(); err != nil {
				return abort(nil, err)
			}
		}
		if w == nil {
			if w, err = layer.NewWriter(env, tl.dir); err != nil {
				return abort(nil, err)
			}
		}
		if err := w.Add(it.Key(), it.LSN(), it.Encoded()); err != nil {
			return abort(w, err)
		}
	}
	if err := m.err(); err != nil {
		return abort(w, err)
	}
	// The iterators hold the L0 layers open, and removing them waits.
	m.close()
	if w != nil {
		if err := finish(); err != nil {
			return abort(nil, err)
		}
	}
	if err := vfs.SyncDir(tl.tenant.repo.fs, tl.dir); err != nil {
		return abort(nil, err)
	}
	add, remove := make([]layer.Layer, len(out)), make([]layer.Layer, len(l0))
	for i, f := range out {
		add[i] = f
	}
	for i, f := range l0 {
		remove[i] = f
	}
	if listed, err := tl.replaceLayers(add, remove, nil); err != nil {
		if listed {
			return err // the new layers may be listed on disk: keep them
		}
		return abort(nil, err)
	}
	tl.log.Info().Int("l0_layers", len(l0)).Int("new_layers", len(out)).Stringer("lsns", lsns).Msg("compacted L0 delta layers")
	return nil
}

// replaceLayers commits a new layer set (and, if set, a new GC cut-off) and
// then deletes the removed layers' files. The files are only deleted once
// the metadata that no longer lists them is durable. listed is commit's.
func (tl *Timeline) replaceLayers(add, remove []layer.Layer, cutoff *pgdata.LSN) (listed bool, err error) {
	listed, err = tl.commit(func(d *durable) {
		d.layers = d.layers.With(add, remove)
		if cutoff != nil {
			d.gcCutoff = *cutoff
		}
	}, nil)
	if err != nil {
		return listed, err
	}
	for _, l := range remove {
		if err := l.(*layer.File).Remove(); err != nil {
			tl.log.Warn().Err(err).Msg("remove layer file no longer listed")
		}
	}
	return true, nil
}

// supersededFrom is the lowest LSN at which an image supersedes layer d:
// an image at or above d's last LSN holds everything d holds. An image
// layer is only superseded by a strictly newer one.
func supersededFrom(d layer.Desc) pgdata.LSN {
	if d.Kind == layer.Image {
		return d.LSNs.Start + 1
	}
	return d.LSNs.End - 1
}
