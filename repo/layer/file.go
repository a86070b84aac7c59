package layer

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/sstable"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// File is a delta or image layer file. It opens its file on first use and
// keeps it open until Close or Remove, or until its Env's limit of open
// files closes it to open another (it reopens on its next use).
type File struct {
	env  *Env
	desc Desc
	path string

	// mu is read-locked while the file is read, so that neither Remove
	// nor the Env's file cache closes it under a reader.
	mu      sync.RWMutex
	r       *sstable.Reader
	src     *readable // r's file
	removed bool
	// pass is the reader of scans (Cursors.Scan), on src, opened on the
	// first; passMu guards its opening, under mu read-locked.
	passMu sync.Mutex
	pass   *sstable.Reader
	// elem is the file's place in the Env's file cache while it is open;
	// guarded by both mu and the cache's lock.
	elem *list.Element
	// used is when the layer was last read (Unix nanoseconds), for
	// eviction of the least recently used.
	used atomic.Int64
}

// OpenFile returns the layer file d in dir. The file is not read until the
// layer is used.
func OpenFile(env *Env, dir string, d Desc) *File {
	return &File{env: env, desc: d, path: filepath.Join(dir, d.FileName())}
}

// Desc implements Layer.
func (l *File) Desc() Desc { return l.desc }

// Path is the file's path.
func (l *File) Path() string { return l.path }

// reader returns the open sstable reader, opening the file if needed, with
// l.mu read-locked; the caller unlocks.
func (l *File) reader() (*sstable.Reader, error) {
	l.used.Store(time.Now().UnixNano())
	for {
		l.mu.RLock()
		if l.removed {
			l.mu.RUnlock()
			return nil, fmt.Errorf("layer file %s: %w", l.path, ErrRemoved)
		}
		if l.r != nil {
			l.env.files.touch(l)
			return l.r, nil
		}
		l.mu.RUnlock()
		if err := l.openCached(); err != nil {
			return nil, err
		}
		// The cache may close the file again before it is read-locked
		// (only if every other open file is in use): then open it again.
	}
}

// openCached opens the file, if it is not open, within the Env's limit of
// open files.
func (l *File) openCached() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.r != nil || l.removed {
		return nil
	}
	l.env.files.reserve()
	r, src, err := l.open()
	if outOfDescriptors(err) && l.env.files.shed() > 0 {
		r, src, err = l.open()
	}
	if err != nil {
		l.env.files.release()
		return err
	}
	l.r, l.src = r, src
	l.env.files.add(l)
	return nil
}

// outOfDescriptors reports whether err says the process (EMFILE) or the
// system (ENFILE) has no file descriptor left.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// open opens the file and checks its trailer. It is the one place a layer
// file is opened for reading.
func (l *File) open() (r *sstable.Reader, src *readable, err error) {
	defer recoverCorruption(&err, l.path)
	f, err := l.env.FS.Open(l.path)
	if errors.Is(err, fs.ErrNotExist) && l.env.Fetch != nil {
		if err := l.env.Fetch(l.path); err != nil {
			return nil, nil, fmt.Errorf("fetch layer file %s: %w", l.path, err)
		}
		f, err = l.env.FS.Open(l.path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open layer file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat layer file %s: %w", l.path, err)
	}
	t, err := checkTrailer(f, st.Size(), l.desc, l.path)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	src = &readable{f: f, size: int64(t.sstSize)}
	r, err = sstable.NewReader(src, l.env.readerOpts)
	if err != nil {
		// NewReader closes the readable, and so the file, on error.
		return nil, nil, errorOf(err, l.path)
	}
	return r, src, nil
}

// passReader returns the reader of scans, opening it on the first; l.mu
// is read-locked (by reader).
func (l *File) passReader() (_ *sstable.Reader, err error) {
	l.passMu.Lock()
	defer l.passMu.Unlock()
	if l.pass != nil {
		return l.pass, nil
	}
	defer recoverCorruption(&err, l.path)
	r, err := sstable.NewReader(sharedReadable{l.src}, l.env.passOpts)
	if err != nil {
		return nil, errorOf(err, l.path)
	}
	l.pass = r
	return r, nil
}

// Collect implements Layer. It reads k's versions backwards from the
// newest below lsns.End, so it stops at the first that initializes the
// page without reading older ones.
func (l *File) Collect(k key.Key, lsns LSNRange, st *ReconstructState) (err error) {
	from, to, ok := l.clip(lsns)
	if !ok {
		return nil
	}
	r, err := l.reader()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	defer recoverCorruption(&err, l.path)
	upper := entryKey(nil, k, to)
	it, err := r.NewIter(entryKey(nil, k, from), upper)
	if err != nil {
		return errorOf(err, l.path)
	}
	err = l.collectFrom(it, upper, k, from, to, st)
	if cerr := it.Close(); err == nil {
		err = errorOf(cerr, l.path)
	}
	return err
}

// clip is lsns within the layer's LSN range; ok is false if that is empty.
func (l *File) clip(lsns LSNRange) (from, to pgdata.LSN, ok bool) {
	from = max(lsns.Start, l.desc.LSNs.Start)
	to = min(lsns.End, l.desc.LSNs.End)
	return from, to, from < to
}

// collectFrom is Collect's reading, through it, whose bounds are k's
// entries in [from, to); upper is the entry key of k at to.
func (l *File) collectFrom(it sstable.Iterator, upper []byte, k key.Key, from, to pgdata.LSN, st *ReconstructState) error {
	ik, lv := it.SeekLT(upper, sstable.SeekLTFlags(0))
	for ik != nil && !st.Complete {
		lsn, v, err := entryValue(l, ik, &lv, k, from, to)
		if err != nil {
			return err
		}
		// The iterator reuses the value's memory.
		v.Data = bytes.Clone(v.Data)
		if st.add(lsn, v); st.Complete {
			break
		}
		ik, lv = it.Prev()
	}
	if err := it.Error(); err != nil {
		return errorOf(err, l.path)
	}
	if l.desc.Kind == Image {
		// An image layer lists every key of its range that exists.
		st.Complete = true
	}
	return nil
}

// entryValue decodes the entry an iterator bounded to k's entries in
// [from, to) is on, checking that it is within them. The value is the
// iterator's memory.
func entryValue[V lazyValue](l *File, ik *sstable.InternalKey, lv V, k key.Key, from, to pgdata.LSN) (pgdata.LSN, value.Value, error) {
	_, b, err := entryOf(ik, lv)
	if err != nil {
		return 0, value.Value{}, errorOf(err, l.path)
	}
	ek, lsn, ok := splitEntryKey(ik.UserKey)
	if !ok || ek != k || lsn < from || lsn >= to {
		return 0, value.Value{}, corruptf(l.path, -1, "entry key %x out of range for %v %v", ik.UserKey, k, LSNRange{from, to})
	}
	v, err := value.Decode(b)
	if err != nil {
		return 0, value.Value{}, corruptf(l.path, -1, "value of %v at %v: %v", k, lsn, err)
	}
	return lsn, v, nil
}

// Verify reads the whole file and checks every block's checksum.
func (l *File) Verify() (err error) {
	r, err := l.reader()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	defer recoverCorruption(&err, l.path)
	return errorOf(r.ValidateBlockChecksums(), l.path)
}

// Iterator walks a layer file's entries in key and LSN order. It keeps
// the layer open (Remove waits) until Close.
type Iterator struct {
	l       *File
	it      sstable.Iterator
	keys    key.Range
	k       key.Key
	lsn     pgdata.LSN
	val     value.Value
	enc     []byte
	err     error
	started bool
	done    bool
}

// NewIterator returns an iterator over the entries whose key is in keys.
func (l *File) NewIterator(keys key.Range) (_ *Iterator, err error) {
	r, err := l.reader()
	if err != nil {
		return nil, err
	}
	defer recoverCorruption(&err, l.path)
	it, err := r.NewIter(entryKey(nil, keys.Start, 0), entryKey(nil, keys.End, 0))
	if err != nil {
		l.mu.RUnlock()
		return nil, errorOf(err, l.path)
	}
	return &Iterator{l: l, it: it, keys: keys}, nil
}

// Next moves to the next entry; it returns false at the end or on error
// (see Err).
func (i *Iterator) Next() bool {
	if i.done {
		return false
	}
	defer recoverCorruption(&i.err, i.l.path)
	ik, b, err := i.step()
	if err != nil {
		return i.fail(errorOf(err, i.l.path))
	}
	if ik == nil {
		i.done = true
		i.err = errorOf(i.it.Error(), i.l.path)
		return false
	}
	k, lsn, ok := splitEntryKey(ik.UserKey)
	d := i.l.desc
	if !ok || !i.keys.Contains(k) || !d.Keys.Contains(k) || !d.LSNs.Contains(lsn) {
		return i.fail(corruptf(i.l.path, -1, "entry key %x outside the layer %v", ik.UserKey, d))
	}
	v, err := value.Decode(b)
	if err != nil {
		return i.fail(corruptf(i.l.path, -1, "value of %v at %v: %v", k, lsn, err))
	}
	i.k, i.lsn, i.enc, i.val = k, lsn, b, v
	return true
}

// step positions the sstable iterator on the next entry and fetches its
// value; the key is nil at the end.
func (i *Iterator) step() (*sstable.InternalKey, []byte, error) {
	if !i.started {
		i.started = true
		ik, lv := i.it.SeekGE(entryKey(nil, i.keys.Start, 0), sstable.SeekGEFlags(0))
		return entryOf(ik, &lv)
	}
	ik, lv := i.it.Next()
	return entryOf(ik, &lv)
}

// lazyValue is pebble's LazyValue, whose type is internal to pebble.
type lazyValue interface {
	Value(buf []byte) ([]byte, bool, error)
}

func entryOf[V lazyValue](ik *sstable.InternalKey, lv V) (*sstable.InternalKey, []byte, error) {
	if ik == nil {
		return nil, nil, nil
	}
	b, _, err := lv.Value(nil)
	return ik, b, err
}

func (i *Iterator) fail(err error) bool {
	i.err, i.done = err, true
	return false
}

// Key, LSN and Value are the current entry; Encoded is the value's
// encoding. The slices are only valid until the next call to Next.
func (i *Iterator) Key() key.Key { return i.k }

// LSN is the current entry's LSN.
func (i *Iterator) LSN() pgdata.LSN { return i.lsn }

// Value is the current entry's value.
func (i *Iterator) Value() value.Value { return i.val }

// Encoded is the current entry's encoded value.
func (i *Iterator) Encoded() []byte { return i.enc }

// Err is the error that ended the iteration, if any.
func (i *Iterator) Err() error { return i.err }

// Close releases the iterator; it returns Err, or the error of closing.
func (i *Iterator) Close() error {
	err := i.it.Close()
	i.l.mu.RUnlock()
	if i.err != nil {
		return i.err
	}
	return errorOf(err, i.l.path)
}

// Scan calls fn for every entry whose key is in keys, in key and LSN order.
// The value passed to fn is only valid during the call.
func (l *File) Scan(keys key.Range, fn func(k key.Key, lsn pgdata.LSN, v value.Value) error) error {
	it, err := l.NewIterator(keys)
	if err != nil {
		return err
	}
	for it.Next() {
		if err := fn(it.Key(), it.LSN(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// Close closes the file; the layer can be used again (it reopens).
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closeLocked()
}

func (l *File) closeLocked() error {
	if l.r == nil {
		return nil
	}
	l.env.files.remove(l)
	if err := l.closeReader(); err != nil {
		return fmt.Errorf("close layer file %s: %w", l.path, err)
	}
	return nil
}

// closeReader closes the open readers; l.mu is locked.
func (l *File) closeReader() error {
	var err error
	if l.pass != nil {
		err = l.pass.Close()
		l.pass = nil
	}
	if rerr := l.r.Close(); err == nil {
		err = rerr
	}
	l.r, l.src = nil, nil
	return err
}

// LastUsed is when the layer was last read; zero if it never was.
func (l *File) LastUsed() time.Time {
	if n := l.used.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Evict closes the file and deletes it from the local disk, waiting for
// reads under way; unlike Remove, the layer stays usable: its next read
// opens it again, through Env.Fetch. Only a layer that is safe elsewhere
// (uploaded) may be evicted.
func (l *File) Evict() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.removed {
		return nil
	}
	cerr := l.closeLocked()
	if err := l.env.FS.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("evict layer file: %w", err)
	}
	return cerr
}

// Remove closes and deletes the file. Reads that found the layer before
// get ErrRemoved.
func (l *File) Remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removed = true
	cerr := l.closeLocked()
	if err := l.env.FS.Remove(l.path); err != nil {
		return fmt.Errorf("remove layer file: %w", err)
	}
	return cerr
}
