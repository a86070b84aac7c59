package layermap

import (
	"slices"
	"sort"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// entry is a layer and its description, fixed when the layer was added.
type entry struct {
	desc layer.Desc
	l    layer.Layer
}

// Map is an immutable set of layers.
type Map struct {
	entries []entry // sorted by newer(), newest first
	index   keyIndex
}

// keyIndex lists, for every key, the entries whose key range holds it:
// the bounds of all the layers' key ranges cut the key space into
// segments, and every layer either holds all of a segment's keys or
// none. Search walks a segment's list, in the map's order, instead of
// every layer: with 35 small L0 layers (each of every key, each visited
// by every read) the linear walk over the whole map was 47% of the page
// server's CPU in a scan.
type keyIndex struct {
	// bounds are the distinct starts and ends of the layers' key
	// ranges, ascending; segment i is [bounds[i], bounds[i+1]).
	bounds []key.Key
	segs   []segment
}

// segment is one segment's entries.
type segment struct {
	// entries are indexes into Map.entries, ascending: the map's order.
	entries []int32
	// minStart[j] is the lowest LSN start of entries[:j+1]. It does not
	// increase, so the first entry that starts below an LSN is found by
	// a binary search.
	minStart []pgdata.LSN
}

// newKeyIndex indexes entries (in the map's order).
func newKeyIndex(entries []entry) keyIndex {
	if len(entries) == 0 {
		return keyIndex{}
	}
	bounds := make([]key.Key, 0, 2*len(entries))
	for _, e := range entries {
		if e.desc.Keys.Empty() {
			continue
		}
		bounds = append(bounds, e.desc.Keys.Start, e.desc.Keys.End)
	}
	slices.SortFunc(bounds, key.Key.Compare)
	bounds = slices.Compact(bounds)
	if len(bounds) < 2 {
		return keyIndex{}
	}
	segs := make([]segment, len(bounds)-1)
	for i, e := range entries {
		if e.desc.Keys.Empty() {
			continue
		}
		first, _ := slices.BinarySearchFunc(bounds, e.desc.Keys.Start, key.Key.Compare)
		last, _ := slices.BinarySearchFunc(bounds, e.desc.Keys.End, key.Key.Compare)
		for s := first; s < last; s++ {
			seg := &segs[s]
			low := e.desc.LSNs.Start
			if n := len(seg.minStart); n > 0 {
				low = min(low, seg.minStart[n-1])
			}
			seg.entries = append(seg.entries, int32(i))
			seg.minStart = append(seg.minStart, low)
		}
	}
	return keyIndex{bounds: bounds, segs: segs}
}

// segment returns the segment of k, nil if no layer holds k.
func (x *keyIndex) segment(k key.Key) *segment {
	// The last bound at or below k.
	i := sort.Search(len(x.bounds), func(i int) bool { return k.Less(x.bounds[i]) }) - 1
	if i < 0 || i >= len(x.segs) {
		return nil
	}
	return &x.segs[i]
}

// New returns a map of the given layers.
func New(layers ...layer.Layer) *Map { return (&Map{}).With(layers, nil) }

// newer orders entries for Search: by LSN end descending, an image before
// a delta that ends at the same LSN (the image supersedes it), then by
// start descending.
func newer(a, b layer.Desc) bool {
	if a.LSNs.End != b.LSNs.End {
		return a.LSNs.End > b.LSNs.End
	}
	if (a.Kind == layer.Image) != (b.Kind == layer.Image) {
		return a.Kind == layer.Image
	}
	if a.LSNs.Start != b.LSNs.Start {
		return a.LSNs.Start > b.LSNs.Start
	}
	return a.Keys.Start.Less(b.Keys.Start)
}

// With returns a new map with the layers of add added and those of remove
// removed (compared by identity).
func (m *Map) With(add, remove []layer.Layer) *Map {
	gone := make(map[layer.Layer]bool, len(remove))
	for _, l := range remove {
		gone[l] = true
	}
	n := &Map{entries: make([]entry, 0, len(m.entries)+len(add))}
	for _, e := range m.entries {
		if !gone[e.l] {
			n.entries = append(n.entries, e)
		}
	}
	for _, l := range add {
		n.entries = append(n.entries, entry{l.Desc(), l})
	}
	sort.SliceStable(n.entries, func(i, j int) bool { return newer(n.entries[i].desc, n.entries[j].desc) })
	n.index = newKeyIndex(n.entries)
	return n
}

// Len is the number of layers.
func (m *Map) Len() int { return len(m.entries) }

// Layers returns every layer, newest first.
func (m *Map) Layers() []layer.Layer {
	ls := make([]layer.Layer, len(m.entries))
	for i, e := range m.entries {
		ls[i] = e.l
	}
	return ls
}

// Search finds the layer to read next for key k, given that every value at
// end or later has been read: the layer with the newest values of k below
// end. It returns the layer and the floor: read the layer's values in
// [floor, end), then continue with Search(k, floor). ok is false when no
// layer holds anything of k below end.
func (m *Map) Search(k key.Key, end pgdata.LSN) (l layer.Layer, floor pgdata.LSN, ok bool) {
	seg := m.index.segment(k)
	if seg == nil {
		return nil, 0, false
	}
	// Every entry of the segment holds k. Those before the first that
	// starts below end are all at or above end: skipped.
	first := sort.Search(len(seg.minStart), func(j int) bool { return seg.minStart[j] < end })
	var best entry
	var bestEnd pgdata.LSN
	for _, i := range seg.entries[first:] {
		e := m.entries[i]
		d := e.desc
		if d.LSNs.Start >= end {
			continue
		}
		eff := min(d.LSNs.End, end)
		if !ok {
			best, bestEnd, ok = e, eff, true
			continue
		}
		// Entries come in decreasing LSN end, so the first one that ends
		// below best is the next newest: best is read down to its end.
		if eff < bestEnd {
			return best.l, max(best.desc.LSNs.Start, eff), true
		}
		// An image at end-1 supersedes a delta that reaches as far: it
		// already holds the delta's values up to the image's LSN.
		if d.Kind == layer.Image && best.desc.Kind != layer.Image {
			best = e
		}
	}
	if !ok {
		return nil, 0, false
	}
	return best.l, best.desc.LSNs.Start, true
}

// Overlapping returns the layers whose key range overlaps keys and whose
// LSN range overlaps lsns, newest first.
func (m *Map) Overlapping(keys key.Range, lsns layer.LSNRange) []layer.Layer {
	var ls []layer.Layer
	for _, e := range m.entries {
		if e.desc.Keys.Overlaps(keys) && e.desc.LSNs.Start < lsns.End && lsns.Start < e.desc.LSNs.End {
			ls = append(ls, e.l)
		}
	}
	return ls
}

// CoveredByImages reports whether image layers at LSNs in [lo, hi] together
// hold every key of keys: then a read of any key of the range at hi or
// later never needs a layer that ends at or below lo.
func (m *Map) CoveredByImages(keys key.Range, lo, hi pgdata.LSN) bool {
	var rs []key.Range
	for _, e := range m.entries {
		d := e.desc
		if d.Kind == layer.Image && lo <= d.LSNs.Start && d.LSNs.Start <= hi && d.Keys.Overlaps(keys) {
			rs = append(rs, d.Keys)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start.Less(rs[j].Start) })
	next := keys.Start
	for _, r := range rs {
		if next.Less(r.Start) {
			return false
		}
		if next.Less(r.End) {
			next = r.End
		}
		if !next.Less(keys.End) {
			return true
		}
	}
	return !next.Less(keys.End)
}
