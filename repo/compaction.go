package repo

import (
	"container/heap"
	"context"
	"fmt"
	"sort"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/layermap"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// Compact does the timeline's compaction, if its thresholds are reached:
// flushed (L0) delta layers, which each span every key, are merged and
// rewritten as delta layers of key ranges; then key ranges with enough
// delta layers not yet covered by a newer image get image layers at the
// disk-consistent LSN, so that reads stop there and GC can drop what is
// below.
func (tl *Timeline) Compact(ctx context.Context) error {
	tl.compactMu.Lock()
	defer tl.compactMu.Unlock()
	if err := tl.compactL0(ctx); err != nil {
		return fmt.Errorf("compact timeline %s: %w", tl.id, err)
	}
	if err := tl.createImages(ctx); err != nil {
		return fmt.Errorf("create images on timeline %s: %w", tl.id, err)
	}
	return nil
}

// compactL0 merges every L0 delta layer into delta layers of about the
// target size, each holding whole keys' histories for the same LSN range.
func (tl *Timeline) compactL0(ctx context.Context) error {
	conf := tl.tenant.Config()
	files := tl.files()
	var l0 []*layer.File
	for _, l := range files.Layers() {
		if l.Desc().IsL0() {
			l0 = append(l0, l.(*layer.File))
		}
	}
	if len(l0) < conf.CompactionThreshold || len(l0) < 2 {
		return nil
	}
	sort.Slice(l0, func(i, j int) bool { return l0[i].Desc().LSNs.Start < l0[j].Desc().LSNs.Start })
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
	if err := syncDir(tl.tenant.repo.fs, tl.dir); err != nil {
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

// createImages writes image layers at the disk-consistent LSN for key
// ranges that have accumulated ImageCreationThreshold delta layers not
// superseded by an image. The ranges are the key space cut at the starts
// of the key-partitioned delta layers, so images line up with the deltas
// they make obsolete.
func (tl *Timeline) createImages(ctx context.Context) error {
	threshold := tl.tenant.Config().ImageCreationThreshold
	lsn := tl.DiskConsistentLSN()
	files := tl.files()
	var runs []key.Range // consecutive partitions that need images, merged
	for _, p := range partitions(files) {
		n := 0
		for _, l := range files.Overlapping(p, layer.LSNRange{Start: 0, End: lsn + 1}) {
			d := l.Desc()
			if d.Kind == layer.Delta && !files.CoveredByImages(p, supersededFrom(d), lsn) {
				n++
			}
		}
		if n < threshold {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].End == p.Start {
			runs[len(runs)-1].End = p.End
		} else {
			runs = append(runs, p)
		}
	}
	var out []layer.Layer
	for _, r := range runs {
		fs, err := tl.writeImages(ctx, r, lsn)
		out = append(out, fs...)
		if err != nil {
			for _, f := range out {
				tl.removeUnlisted(f.(*layer.File))
			}
			return err
		}
	}
	if len(out) == 0 {
		return nil
	}
	if err := syncDir(tl.tenant.repo.fs, tl.dir); err != nil {
		for _, f := range out {
			tl.removeUnlisted(f.(*layer.File))
		}
		return err
	}
	if listed, err := tl.replaceLayers(out, nil, nil); err != nil {
		if !listed {
			for _, f := range out {
				tl.removeUnlisted(f.(*layer.File))
			}
		}
		return err
	}
	tl.log.Info().Int("image_layers", len(out)).Stringer("lsn", lsn).Msg("created image layers")
	return nil
}

// partitions cuts the key space at the start of every delta layer that is
// not L0.
func partitions(files *layermap.Map) []key.Range {
	cuts := map[key.Key]bool{key.Min: true}
	for _, l := range files.Layers() {
		if d := l.Desc(); d.Kind == layer.Delta && !d.IsL0() {
			cuts[d.Keys.Start] = true
		}
	}
	starts := make([]key.Key, 0, len(cuts))
	for k := range cuts {
		starts = append(starts, k)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Less(starts[j]) })
	ps := make([]key.Range, len(starts))
	for i, s := range starts {
		end := key.Max
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		ps[i] = key.Range{Start: s, End: end}
	}
	return ps
}

// writeImages writes image layers covering r at lsn, cut into files of
// about the target size at key boundaries. It returns the files written,
// also on error (for the caller to remove).
func (tl *Timeline) writeImages(ctx context.Context, r key.Range, lsn pgdata.LSN) ([]layer.Layer, error) {
	keys, err := tl.keysAt(r, lsn)
	if err != nil {
		return nil, err
	}
	target := tl.tenant.Config().CompactionTargetSize
	env := tl.tenant.repo.env
	var out []layer.Layer
	start := r.Start
	w, err := layer.NewWriter(env, tl.dir)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if w.Entries() > 0 && w.Size() >= target {
			f, err := w.Finish(layer.ImageDesc(key.Range{Start: start, End: k}, lsn))
			if err != nil {
				return out, err
			}
			out = append(out, f)
			if err := ctx.Err(); err != nil {
				return out, err
			}
			start = k
			if w, err = layer.NewWriter(env, tl.dir); err != nil {
				return out, err
			}
		}
		page, err := tl.reconstruct(ctx, k, lsn)
		if err == nil {
			err = w.Add(k, lsn, value.Image(page).Encode())
		}
		if err != nil {
			w.Abort()
			return out, fmt.Errorf("image of %v at %v: %w", k, lsn, err)
		}
	}
	f, err := w.Finish(layer.ImageDesc(key.Range{Start: start, End: r.End}, lsn))
	if err != nil {
		return out, err
	}
	return append(out, f), nil
}

// keysAt lists the keys of r that exist at lsn: every key with a value at
// or below lsn in this timeline's layer files or, below the branch point,
// its ancestors'. Layers whose keys an image already lists are skipped,
// and the walk stops at a timeline whose images cover r.
func (tl *Timeline) keysAt(r key.Range, lsn pgdata.LSN) ([]key.Key, error) {
	set := make(map[key.Key]struct{})
	for cur := tl; cur != nil; cur = cur.ancestor {
		files := cur.files()
		for _, l := range files.Overlapping(r, layer.LSNRange{Start: 0, End: lsn + 1}) {
			d := l.Desc()
			sub := key.Range{Start: maxKey(r.Start, d.Keys.Start), End: minKey(r.End, d.Keys.End)}
			if files.CoveredByImages(sub, supersededFrom(d), lsn) {
				continue
			}
			err := l.(*layer.File).Scan(sub, func(k key.Key, at pgdata.LSN, _ value.Value) error {
				if at <= lsn {
					set[k] = struct{}{}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		if files.CoveredByImages(r, 0, lsn) || cur.ancestor == nil {
			break
		}
		lsn = min(lsn, cur.ancestorLSN)
	}
	keys := make([]key.Key, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return keys, nil
}

func maxKey(a, b key.Key) key.Key {
	if a.Less(b) {
		return b
	}
	return a
}

func minKey(a, b key.Key) key.Key {
	if a.Less(b) {
		return a
	}
	return b
}

// merger walks several layer files' entries in key and LSN order. The
// files must not hold the same key at the same LSN (L0 layers have
// disjoint LSN ranges).
type merger struct {
	its  iterHeap
	all  []*layer.Iterator
	cur  *layer.Iterator
	fail error
}

func newMerger(files []*layer.File) (*merger, error) {
	m := &merger{}
	for _, f := range files {
		it, err := f.NewIterator(key.All)
		if err != nil {
			m.close()
			return nil, err
		}
		m.all = append(m.all, it)
		if it.Next() {
			m.its = append(m.its, it)
		} else if err := it.Err(); err != nil {
			m.close()
			return nil, err
		}
	}
	heap.Init(&m.its)
	return m, nil
}

// next advances to the next entry in order.
func (m *merger) next() bool {
	if m.cur != nil {
		if m.cur.Next() {
			heap.Push(&m.its, m.cur)
		} else if err := m.cur.Err(); err != nil {
			m.fail = err
			return false
		}
		m.cur = nil
	}
	if len(m.its) == 0 {
		return false
	}
	m.cur = heap.Pop(&m.its).(*layer.Iterator)
	return true
}

func (m *merger) top() *layer.Iterator { return m.cur }
func (m *merger) err() error           { return m.fail }

// close releases the iterators; it may be called more than once.
func (m *merger) close() {
	for _, it := range m.all {
		// Errors were seen through Next; closing only releases.
		_ = it.Close()
	}
	m.all = nil
}

type iterHeap []*layer.Iterator

func (h iterHeap) Len() int { return len(h) }
func (h iterHeap) Less(i, j int) bool {
	if c := h[i].Key().Compare(h[j].Key()); c != 0 {
		return c < 0
	}
	return h[i].LSN() < h[j].LSN()
}
func (h iterHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *iterHeap) Push(x any)   { *h = append(*h, x.(*layer.Iterator)) }
func (h *iterHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
