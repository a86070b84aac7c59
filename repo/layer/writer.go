package layer

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"

	"github.com/cockroachdb/pebble/sstable"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TempSuffix ends the name of a layer file being written. A file with it
// is never part of a timeline: after a crash it is garbage.
const TempSuffix = ".tmp"

// Writer writes one layer file: entries in key and LSN order, then Finish
// names it. Until Finish succeeds the file has a temporary name.
type Writer struct {
	env     *Env
	dir     string
	tmp     string
	f       vfs.File
	sink    *sink
	w       *sstable.Writer
	buf     []byte
	n       int
	first   key.Key
	last    key.Key
	lastLSN pgdata.LSN
	lsns    LSNRange
}

// NewWriter starts a layer file in dir.
func NewWriter(env *Env, dir string) (*Writer, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, hex.EncodeToString(rnd[:])+TempSuffix)
	f, err := env.FS.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("create layer file: %w", err)
	}
	s := &sink{f: f}
	return &Writer{env: env, dir: dir, tmp: tmp, f: f, sink: s, w: sstable.NewWriter(s, writerOptions())}, nil
}

// Add adds the encoded value enc of k at lsn. Entries must come in
// increasing (key, LSN) order. The writer copies enc: the caller may
// reuse it.
func (w *Writer) Add(k key.Key, lsn pgdata.LSN, enc []byte) error {
	if w.n > 0 {
		if c := k.Compare(w.last); c < 0 || c == 0 && lsn <= w.lastLSN {
			return fmt.Errorf("layer file entry %v@%v after %v@%v: %w", k, lsn, w.last, w.lastLSN, ErrOutOfOrder)
		}
	} else {
		w.first = k
		w.lsns = LSNRange{lsn, lsn + 1}
	}
	w.buf = entryKey(w.buf, k, lsn)
	if err := w.w.Set(w.buf, enc); err != nil {
		return fmt.Errorf("write layer file %s: %w", w.tmp, err)
	}
	w.n++
	w.last, w.lastLSN = k, lsn
	w.lsns.Start = min(w.lsns.Start, lsn)
	w.lsns.End = max(w.lsns.End, lsn+1)
	return nil
}

// Entries is the number of entries added so far.
func (w *Writer) Entries() int { return w.n }

// Size is the number of bytes written to the file so far (entries are
// buffered in blocks, so it trails what was added).
func (w *Writer) Size() int64 { return int64(w.sink.size) }

// FirstKey and LastKey are the smallest and largest keys added.
func (w *Writer) FirstKey() key.Key { return w.first }

// LastKey is the largest key added.
func (w *Writer) LastKey() key.Key { return w.last }

// Finish completes the file as the layer d: it writes the trailer, fsyncs
// the file and renames it to d's file name. Every entry must be within d's
// key and LSN ranges (and, for an image layer, at its LSN). The caller
// fsyncs the directory. On error the file is removed.
func (w *Writer) Finish(d Desc) (*File, error) {
	if err := w.check(d); err != nil {
		w.Abort()
		return nil, err
	}
	err := w.w.Close()
	w.w = nil
	if err == nil {
		n := min(len(w.sink.tail), tailSize)
		t := trailer{desc: d, sstSize: w.sink.size, tailCRC: crc32.Checksum(w.sink.tail[len(w.sink.tail)-n:], castagnoli)}
		_, err = w.f.Write(t.encode())
	}
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	name := filepath.Join(w.dir, d.FileName())
	if err == nil {
		err = w.env.FS.Rename(w.tmp, name)
	}
	if err != nil {
		w.Abort()
		return nil, fmt.Errorf("write layer file %s: %w", name, err)
	}
	return &File{env: w.env, desc: d, path: name}, nil
}

func (w *Writer) check(d Desc) error {
	if d.Kind != Delta && d.Kind != Image {
		return fmt.Errorf("finish layer file as %v: not a file kind", d.Kind)
	}
	if w.n == 0 {
		if d.Kind == Delta {
			return errors.New("finish delta layer file: no entries")
		}
		// An empty image layer says that no key of its range exists.
		return nil
	}
	if !d.Keys.Contains(w.first) || !d.Keys.Contains(w.last) {
		return fmt.Errorf("finish layer file as %v: holds keys %v to %v", d, w.first, w.last)
	}
	if w.lsns.Start < d.LSNs.Start || w.lsns.End > d.LSNs.End {
		return fmt.Errorf("finish layer file as %v: holds LSNs %v", d, w.lsns)
	}
	return nil
}

// Abort gives up the file and removes it.
func (w *Writer) Abort() {
	if w.w != nil {
		_ = w.w.Close() // the file is being thrown away; its error is moot
		w.w = nil
	}
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
	// A leftover temporary file is removed at the next load anyway.
	_ = w.env.FS.Remove(w.tmp)
}
