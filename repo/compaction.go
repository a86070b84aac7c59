package repo

import (
	"context"
	"fmt"
	"sort"

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
