package layer

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/sstable"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// File is a delta or image layer file. It opens its file on first use and
// keeps it open until Close or Remove.
type File struct {
	env  *Env
	desc Desc
	path string

	mu      sync.RWMutex
	r       *sstable.Reader
	removed bool
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
	l.mu.RLock()
	if l.r != nil || l.removed {
		if l.removed {
			l.mu.RUnlock()
			return nil, fmt.Errorf("layer file %s: %w", l.path, ErrRemoved)
		}
		return l.r, nil
	}
	l.mu.RUnlock()
	l.mu.Lock()
	if l.r == nil && !l.removed {
		r, err := l.open()
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.r = r
	}
	l.mu.Unlock()
	return l.reader()
}

func (l *File) open() (r *sstable.Reader, err error) {
	defer recoverCorruption(&err, l.path)
	f, err := l.env.FS.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("open layer file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat layer file %s: %w", l.path, err)
	}
	t, err := checkTrailer(f, st.Size(), l.desc, l.path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r, err = sstable.NewReader(&readable{f: f, size: int64(t.sstSize)}, l.env.readerOpts)
	if err != nil {
		// NewReader closes the readable, and so the file, on error.
		return nil, errorOf(err, l.path)
	}
	return r, nil
}

// Collect implements Layer.
func (l *File) Collect(k key.Key, lsns LSNRange, st *ReconstructState) (err error) {
	r, err := l.reader()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	defer recoverCorruption(&err, l.path)
	lo := entryKey(nil, k, max(lsns.Start, l.desc.LSNs.Start))
	hi := entryKey(nil, k, min(lsns.End, l.desc.LSNs.End))
	it, err := r.NewIter(lo, hi)
	if err != nil {
		return errorOf(err, l.path)
	}
	// The versions come oldest first; the newest that initializes the page
	// is where reconstruction starts.
	var found []value.Record
	for ik, lv := it.SeekGE(lo, sstable.SeekGEFlags(0)); ik != nil; ik, lv = it.Next() {
		ek, lsn, ok := splitEntryKey(ik.UserKey)
		if !ok || ek != k {
			it.Close()
			return corruptf(l.path, -1, "entry key %x out of range for %v", ik.UserKey, k)
		}
		b, _, err := lv.Value(nil)
		if err != nil {
			it.Close()
			return errorOf(err, l.path)
		}
		v, err := value.Decode(b)
		if err != nil {
			it.Close()
			return corruptf(l.path, -1, "value of %v at %v: %v", k, lsn, err)
		}
		if v.Initializes() {
			found = found[:0]
		}
		// The iterator may reuse b's memory.
		v.Data = append([]byte(nil), v.Data...)
		found = append(found, value.Record{LSN: lsn, Value: v})
	}
	if err := it.Close(); err != nil {
		return errorOf(err, l.path)
	}
	for i := len(found) - 1; i >= 0 && !st.Complete; i-- {
		st.add(found[i].LSN, found[i].Value)
	}
	if l.desc.Kind == Image {
		// An image layer lists every key of its range that exists.
		st.Complete = true
	}
	return nil
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

// Scan calls fn for every entry whose key is in keys, in key and LSN order.
// The value passed to fn is only valid during the call.
func (l *File) Scan(keys key.Range, fn func(k key.Key, lsn pgdata.LSN, v value.Value) error) (err error) {
	r, err := l.reader()
	if err != nil {
		return err
	}
	defer l.mu.RUnlock()
	defer recoverCorruption(&err, l.path)
	lo, hi := entryKey(nil, keys.Start, 0), entryKey(nil, keys.End, 0)
	it, err := r.NewIter(lo, hi)
	if err != nil {
		return errorOf(err, l.path)
	}
	defer it.Close()
	for ik, lv := it.SeekGE(lo, sstable.SeekGEFlags(0)); ik != nil; ik, lv = it.Next() {
		k, lsn, ok := splitEntryKey(ik.UserKey)
		if !ok || !keys.Contains(k) || !l.desc.Keys.Contains(k) || !l.desc.LSNs.Contains(lsn) {
			return corruptf(l.path, -1, "entry key %x outside the layer %v", ik.UserKey, l.desc)
		}
		b, _, err := lv.Value(nil)
		if err != nil {
			return errorOf(err, l.path)
		}
		v, err := value.Decode(b)
		if err != nil {
			return corruptf(l.path, -1, "value of %v at %v: %v", k, lsn, err)
		}
		if err := fn(k, lsn, v); err != nil {
			return err
		}
	}
	return errorOf(it.Error(), l.path)
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
	err := l.r.Close()
	l.r = nil
	if err != nil {
		return fmt.Errorf("close layer file %s: %w", l.path, err)
	}
	return nil
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
