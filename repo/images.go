package repo

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/layermap"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// createImages writes image layers at the disk-consistent LSN for key
// ranges that have accumulated ImageCreationThreshold delta layers not
// superseded by an image. The ranges are the key space cut at the starts
// of the key-partitioned delta layers, so images line up with the deltas
// they make obsolete. With unimaged set, it also writes images of the
// keys that no image holds at all (see unimaged); those images span only
// the keys that exist, so keys added later, past them, are still seen as
// never imaged.
func (tl *Timeline) createImages(ctx context.Context, unimaged bool) error {
	conf := tl.tenant.Config()
	threshold := conf.ImageCreationThreshold
	lsn := tl.DiskConsistentLSN()
	files := tl.files()
	var runs []key.Range // consecutive partitions that need images, merged
	for _, p := range partitions(files) {
		n := 0.0
		for _, l := range files.Overlapping(p, layer.LSNRange{Start: 0, End: lsn + 1}) {
			d := l.Desc()
			if d.Kind == layer.Delta && !files.CoveredByImages(p, supersededFrom(d), lsn) {
				n += deltaWeight(d, conf.CheckpointDistance)
			}
		}
		if n < float64(threshold) {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].End == p.Start {
			runs[len(runs)-1].End = p.End
		} else {
			runs = append(runs, p)
		}
	}
	var gaps []key.Range
	if unimaged {
		gaps = subtractRanges(tl.unimaged(files, lsn), runs)
	}
	var out []layer.Layer
	abort := func(err error) error {
		for _, f := range out {
			tl.removeUnlisted(f.(*layer.File))
		}
		return err
	}
	for i, r := range append(runs, gaps...) {
		fs, err := tl.writeImages(ctx, r, lsn, i >= len(runs))
		out = append(out, fs...)
		if err != nil {
			return abort(err)
		}
	}
	if len(out) == 0 {
		return nil
	}
	if err := vfs.SyncDir(tl.tenant.repo.fs, tl.dir); err != nil {
		return abort(err)
	}
	if listed, err := tl.replaceLayers(out, nil, nil); err != nil {
		if listed {
			return err // the new layers may be listed on disk: keep them
		}
		return abort(err)
	}
	tl.log.Info().Int("image_layers", len(out)).Int("never_imaged_ranges", len(gaps)).Stringer("lsn", lsn).Msg("created image layers")
	return nil
}

// deltaWeight is what delta layer d counts for toward the image creation
// threshold: one, or for an L0 layer the share of the checkpoint distance
// its WAL spans. L0 layers are flushed before the checkpoint distance
// when the in-memory layers reach their memory limit (16 MiB of WAL by
// default, not 256 MiB): counted as one each, three of them made every
// key range's image be rewritten for each 48 MiB of WAL under a steady
// write load.
func deltaWeight(d layer.Desc, checkpointDistance int64) float64 {
	if !d.IsL0() {
		return 1
	}
	return min(1, float64(d.LSNs.End-d.LSNs.Start)/float64(checkpointDistance))
}

// unimaged returns the parts of the key ranges of files' delta layers at
// or below lsn that no image layer holds, at any LSN up to lsn, in tl or,
// below the branch point, its ancestors: a read of a key there replays
// every record of the key's history.
func (tl *Timeline) unimaged(files *layermap.Map, lsn pgdata.LSN) []key.Range {
	var deltas, images []key.Range
	for _, l := range files.Layers() {
		if d := l.Desc(); d.Kind == layer.Delta && d.LSNs.Start <= lsn {
			deltas = append(deltas, d.Keys)
		}
	}
	for cur, at := tl, lsn; cur != nil; cur, at = cur.ancestor, min(at, cur.ancestorLSN) {
		if cur != tl {
			files = cur.files()
		}
		for _, l := range files.Layers() {
			if d := l.Desc(); d.Kind == layer.Image && d.LSNs.Start <= at {
				images = append(images, d.Keys)
			}
		}
	}
	return subtractRanges(deltas, images)
}

// unionRanges returns the keys of rs as sorted ranges that neither
// overlap nor touch.
func unionRanges(rs []key.Range) []key.Range {
	rs = slices.Clone(rs)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start.Less(rs[j].Start) })
	var out []key.Range
	for _, r := range rs {
		if r.Empty() {
			continue
		}
		if n := len(out); n > 0 && !out[n-1].End.Less(r.Start) {
			out[n-1].End = maxKey(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtractRanges returns the keys of a that are in no range of b, as
// sorted ranges that neither overlap nor touch.
func subtractRanges(a, b []key.Range) []key.Range {
	b = unionRanges(b)
	var out []key.Range
	for _, r := range unionRanges(a) {
		for _, c := range b {
			if !r.Start.Less(c.End) {
				continue
			}
			if !c.Start.Less(r.End) {
				break
			}
			if r.Start.Less(c.Start) {
				out = append(out, key.Range{Start: r.Start, End: c.Start})
			}
			r.Start = c.End
			if r.Empty() {
				break
			}
		}
		if !r.Empty() {
			out = append(out, r)
		}
	}
	return out
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
// about the target size at key boundaries. With tight set, the images
// span only r's keys that exist at lsn, from the first to the last, and
// none is written if there are none. It returns the files written, also
// on error (for the caller to remove).
func (tl *Timeline) writeImages(ctx context.Context, r key.Range, lsn pgdata.LSN, tight bool) ([]layer.Layer, error) {
	keys, err := tl.keysAt(r, lsn)
	if err != nil {
		return nil, err
	}
	if tight {
		if len(keys) == 0 {
			return nil, nil
		}
		r = key.Range{Start: keys[0], End: keys[len(keys)-1].Next()}
	}
	target := tl.tenant.Config().CompactionTargetSize
	env := tl.tenant.repo.env
	var out []layer.Layer
	start := r.Start
	w, err := layer.NewWriter(env, tl.dir)
	if err != nil {
		return nil, err
	}
	var enc []byte // the writer copies each value: one buffer serves all
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
			enc = value.Image(page).AppendEncoded(enc[:0])
			err = w.Add(k, lsn, enc)
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
