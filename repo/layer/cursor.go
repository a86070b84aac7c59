package layer

import (
	"bytes"

	"github.com/cockroachdb/pebble/sstable"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// Cursors reads a run of keys, such as the consecutive blocks of one
// fetch, from layer files through one sstable iterator per file, kept
// open from one key to the next: a key in the data block the iterator
// holds already is read without a block cache lookup, and each block is
// taken from the block cache (or the file) once per run rather than once
// per key; the blocks of a Scan bypass the cache. Collect through
// Cursors finds what the layer's own
// Collect finds, but an image it adds to the ReconstructState is not
// the caller's: it is the iterator's memory or a buffer of the Cursors,
// valid until the next Collect through the same Cursors, or Close.
//
// A file read through Cursors stays open and read-locked (Remove, Evict
// and the Env's file cache wait) until Close: a run should be short and
// Close should follow it. Cursors is not safe for concurrent use.
type Cursors struct {
	// Scan says that the run is part of a scan, which reads each block
	// once: its blocks bypass the Env's shared block cache, whose
	// insertions and evictions (and, with the cache in the Go heap, the
	// page faults of its new memory) cost a scan more than the cache
	// saves it, and which the scan would empty of the point reads'
	// blocks. Set it before the first Collect.
	Scan bool
	open map[*File]*cursor
}

// cursor is one file's iterator in Cursors.
type cursor struct {
	it sstable.Iterator
	// bounds are two pairs of buffers for the iterator's bounds, used in
	// turn: pebble keeps the slices and compares new bounds with them.
	bounds [2][2][]byte
	turn   int
	// found holds a delta layer's values of one key, oldest first, from
	// the newest that initializes the page on.
	found []found
	// image holds the copy of a delta layer's image in found, reused from
	// key to key.
	image []byte
}

type found struct {
	lsn pgdata.LSN
	v   value.Value
}

// Collect is l.Collect(k, lsns, st), through a kept iterator if l is a
// layer file; a nil Cursors is l.Collect itself.
func (c *Cursors) Collect(l Layer, k key.Key, lsns LSNRange, st *ReconstructState) error {
	f, ok := l.(*File)
	if !ok || c == nil {
		return l.Collect(k, lsns, st)
	}
	return f.collectCursor(c, k, lsns, st)
}

func (l *File) collectCursor(c *Cursors, k key.Key, lsns LSNRange, st *ReconstructState) (err error) {
	from, to, ok := l.clip(lsns)
	if !ok {
		return nil
	}
	cur := c.open[l]
	if cur == nil {
		if _, err := l.reader(); err != nil {
			return err
		}
		// From here on l stays read-locked until Close.
		it, err := l.newCursorIter(c.Scan)
		if err != nil {
			l.mu.RUnlock()
			return err
		}
		if c.open == nil {
			c.open = make(map[*File]*cursor)
		}
		cur = &cursor{it: it}
		c.open[l] = cur
	}
	defer recoverCorruption(&err, l.path)
	cur.turn ^= 1
	b := &cur.bounds[cur.turn]
	b[0], b[1] = entryKey(b[0], k, from), entryKey(b[1], k, to)
	cur.it.SetBounds(b[0], b[1])
	return l.collectForward(cur, b[0], k, from, to, st)
}

// collectForward is collectFrom for Cursors: it reads k's entries in
// [from, to) forwards, from lower, k's entry key at from. From one key
// to the next the bounds only move forwards, and pebble then seeks
// without reloading the blocks it is on; a SeekLT reloads the index
// block and the data block of a table with a two-level index (a large
// layer file), once a key. An image layer's image is not copied: it is
// the iterator's memory, and the iterator stays on it (an image layer
// holds one entry a key). A delta layer's image is copied into the
// cursor's buffer, its records are copied.
func (l *File) collectForward(cur *cursor, lower []byte, k key.Key, from, to pgdata.LSN, st *ReconstructState) error {
	it := cur.it
	ik, lv := it.SeekGE(lower, sstable.SeekGEFlags(0))
	for ik != nil {
		lsn, v, err := entryValue(l, ik, &lv, k, from, to)
		if err != nil {
			return err
		}
		if l.desc.Kind == Image {
			if v.Kind != value.KindImage {
				v.Data = bytes.Clone(v.Data)
			}
			st.add(lsn, v)
			break
		}
		if v.Initializes() {
			// Nothing older is needed.
			clear(cur.found)
			cur.found = cur.found[:0]
		}
		// The iterator reuses the value's memory.
		if v.Kind == value.KindImage {
			cur.image = append(cur.image[:0], v.Data...)
			v.Data = cur.image
		} else {
			v.Data = bytes.Clone(v.Data)
		}
		cur.found = append(cur.found, found{lsn, v})
		ik, lv = it.Next()
	}
	if err := it.Error(); err != nil {
		return errorOf(err, l.path)
	}
	for i := len(cur.found) - 1; i >= 0 && !st.Complete; i-- {
		st.add(cur.found[i].lsn, cur.found[i].v)
	}
	clear(cur.found) // the records are st's now
	cur.found = cur.found[:0]
	if l.desc.Kind == Image {
		// An image layer lists every key of its range that exists.
		st.Complete = true
	}
	return nil
}

// newCursorIter opens an iterator for Cursors; a scan's is on the reader
// whose blocks bypass the shared block cache. l is read-locked.
func (l *File) newCursorIter(scan bool) (_ sstable.Iterator, err error) {
	r := l.r
	if scan {
		if r, err = l.passReader(); err != nil {
			return nil, err
		}
	}
	defer recoverCorruption(&err, l.path)
	it, err := r.NewIter(nil, nil)
	if err != nil {
		return nil, errorOf(err, l.path)
	}
	return it, nil
}

// Close closes the iterators and releases their files; it returns the
// first error of closing. The Cursors can be used again after.
func (c *Cursors) Close() error {
	var first error
	for l, cur := range c.open {
		if err := closeIter(l, cur.it); err != nil && first == nil {
			first = err
		}
		l.mu.RUnlock()
		delete(c.open, l)
	}
	return first
}

func closeIter(l *File, it sstable.Iterator) (err error) {
	defer recoverCorruption(&err, l.path)
	return errorOf(it.Close(), l.path)
}
