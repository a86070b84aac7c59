package layer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/objstorage"
	"github.com/cockroachdb/pebble/sstable"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Env is what reading and writing layer files needs: the file system, a
// block cache shared by every layer file and the limit of layer files open
// at once.
type Env struct {
	FS vfs.FS
	// Fetch, if set, is called when a layer file to be opened is missing
	// from FS (a layer evicted, or not downloaded yet, from remote
	// storage): it brings the file to path, and the open is tried again.
	Fetch      func(path string) error
	readerOpts sstable.ReaderOptions
	// passOpts are those of the readers of scans (Cursors.Scan), which
	// read each block once: a small cache of their own keeps the blocks
	// that every batch of a scan reads again (index blocks, the blocks of
	// small layer files).
	passOpts sstable.ReaderOptions
	files    *fileCache
}

// scanCacheBytes is the size of the scans' block cache. With none, a
// scan's read calls doubled (each batch read the index blocks and the
// small layer files again) and its CPU was 7% higher.
const scanCacheBytes = 4 << 20

// NewEnv returns an environment on fs with a block cache of cacheBytes
// (uncompressed blocks of layer files; 0 disables it) that keeps at most
// maxOpenFiles layer files open (at least 1). Close releases the cache.
func NewEnv(fs vfs.FS, cacheBytes int64, maxOpenFiles int) *Env {
	return &Env{
		FS:         fs,
		readerOpts: sstable.ReaderOptions{Cache: pebble.NewCache(cacheBytes)},
		passOpts:   sstable.ReaderOptions{Cache: pebble.NewCache(scanCacheBytes)},
		files:      newFileCache(max(maxOpenFiles, 1)),
	}
}

// BlockCacheBytes is the memory the block cache holds now.
func (e *Env) BlockCacheBytes() int64 { return e.readerOpts.Cache.Size() }

// FileStats reports the layer files open now against the limit.
func (e *Env) FileStats() FileStats { return e.files.stats() }

// Close closes the layer files still open and releases the block cache;
// no File may be in use.
func (e *Env) Close() {
	e.files.closeAll()
	e.readerOpts.Cache.Unref()
	e.passOpts.Cache.Unref()
}

func writerOptions() sstable.WriterOptions {
	return sstable.WriterOptions{
		// A block holds a few 8 KiB pages; the index stays small.
		BlockSize:   32 << 10,
		Compression: sstable.SnappyCompression,
		Checksum:    sstable.ChecksumTypeCRC32c,
	}
}

// entryKeySize is the size of an sstable key: repository key and LSN.
const entryKeySize = key.Size + 8

func entryKey(buf []byte, k key.Key, lsn pgdata.LSN) []byte {
	buf = append(buf[:0], k[:]...)
	return binary.BigEndian.AppendUint64(buf, uint64(lsn))
}

func splitEntryKey(b []byte) (key.Key, pgdata.LSN, bool) {
	var k key.Key
	if len(b) != entryKeySize {
		return k, 0, false
	}
	copy(k[:], b[:key.Size])
	return k, pgdata.LSN(binary.BigEndian.Uint64(b[key.Size:])), true
}

// The trailer after the sstable.
const (
	trailerMagic = "ZNTHLYR1"
	// magic, kind, key range, LSN range, sstable size, tail CRC, trailer CRC
	trailerSize = len(trailerMagic) + 1 + 2*key.Size + 2*8 + 8 + 4 + 4
	// tailSize is how many of the sstable's last bytes the trailer's tail
	// CRC covers: more than pebble's longest footer (53 bytes).
	tailSize = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type trailer struct {
	desc    Desc
	sstSize uint64
	tailCRC uint32
}

func (t trailer) encode() []byte {
	b := make([]byte, 0, trailerSize)
	b = append(b, trailerMagic...)
	b = append(b, byte(t.desc.Kind))
	b = append(b, t.desc.Keys.Start[:]...)
	b = append(b, t.desc.Keys.End[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.desc.LSNs.Start))
	b = binary.BigEndian.AppendUint64(b, uint64(t.desc.LSNs.End))
	b = binary.BigEndian.AppendUint64(b, t.sstSize)
	b = binary.BigEndian.AppendUint32(b, t.tailCRC)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeTrailer(b []byte) (trailer, error) {
	var t trailer
	if len(b) != trailerSize {
		return t, fmt.Errorf("trailer is %d bytes, want %d", len(b), trailerSize)
	}
	body, sum := b[:trailerSize-4], binary.BigEndian.Uint32(b[trailerSize-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return t, fmt.Errorf("trailer checksum mismatch: computed %08x, stored %08x", got, sum)
	}
	if string(body[:len(trailerMagic)]) != trailerMagic {
		return t, fmt.Errorf("bad magic %q", body[:len(trailerMagic)])
	}
	p := body[len(trailerMagic):]
	t.desc.Kind = Kind(p[0])
	p = p[1:]
	copy(t.desc.Keys.Start[:], p[:key.Size])
	copy(t.desc.Keys.End[:], p[key.Size:2*key.Size])
	p = p[2*key.Size:]
	t.desc.LSNs.Start = pgdata.LSN(binary.BigEndian.Uint64(p))
	t.desc.LSNs.End = pgdata.LSN(binary.BigEndian.Uint64(p[8:]))
	t.sstSize = binary.BigEndian.Uint64(p[16:])
	t.tailCRC = binary.BigEndian.Uint32(p[24:])
	return t, nil
}

// sink is the objstorage.Writable pebble writes the sstable to: it passes
// the bytes on to the file and remembers the size and the last tailSize
// bytes, for the trailer.
type sink struct {
	f    vfs.File
	size uint64
	tail []byte
}

func (s *sink) Write(p []byte) error {
	s.tail = append(s.tail, p...)
	if len(s.tail) > tailSize {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-tailSize:]...)
	}
	n, err := s.f.Write(p)
	s.size += uint64(n)
	return err
}

// Finish is called by pebble when the sstable is complete; the trailer and
// fsync come after, in Writer.Finish.
func (s *sink) Finish() error { return nil }

// Abort is called by pebble when writing fails; Writer.Abort cleans up.
func (s *sink) Abort() {}

// readable is the objstorage.Readable pebble reads the sstable from: the
// file without its trailer. Its I/O errors are *ioError, so that they are
// not mistaken for corruption when pebble returns them.
type readable struct {
	f    vfs.File
	size int64
}

// ioError marks an error of the file system, as opposed to bad contents.
type ioError struct{ err error }

func (e *ioError) Error() string { return e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

func (r *readable) ReadAt(_ context.Context, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > r.size {
		return fmt.Errorf("read of %d bytes at %d past the sstable's end %d", len(p), off, r.size)
	}
	n, err := r.f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &ioError{err}
}

func (r *readable) Close() error { return r.f.Close() }
func (r *readable) Size() int64  { return r.size }
func (r *readable) NewReadHandle(context.Context) objstorage.ReadHandle {
	h := objstorage.MakeNoopReadHandle(r)
	return &h
}

// sharedReadable is a readable that a second sstable reader reads
// through: closing it leaves the file open for the first.
type sharedReadable struct{ *readable }

func (sharedReadable) Close() error { return nil }

// checkTrailer reads and verifies f's trailer and the sstable tail it
// covers, and that the file is the layer want describes.
func checkTrailer(f vfs.File, size int64, want Desc, name string) (trailer, error) {
	if size < int64(trailerSize) {
		return trailer{}, corruptf(name, size, "file of %d bytes is shorter than its trailer", size)
	}
	buf := make([]byte, trailerSize)
	if _, err := f.ReadAt(buf, size-int64(trailerSize)); err != nil {
		return trailer{}, fmt.Errorf("read trailer of layer file %s: %w", name, err)
	}
	t, err := decodeTrailer(buf)
	if err != nil {
		return t, &CorruptionError{File: name, Offset: size - int64(trailerSize), Err: err}
	}
	if t.sstSize+uint64(trailerSize) != uint64(size) {
		return t, corruptf(name, -1, "file is %d bytes, trailer says %d plus trailer", size, t.sstSize)
	}
	if t.desc != want {
		return t, corruptf(name, -1, "trailer describes %v, name says %v", t.desc, want)
	}
	n := min(int64(tailSize), int64(t.sstSize))
	tail := make([]byte, n)
	if _, err := f.ReadAt(tail, int64(t.sstSize)-n); err != nil {
		return t, fmt.Errorf("read footer of layer file %s: %w", name, err)
	}
	if got := crc32.Checksum(tail, castagnoli); got != t.tailCRC {
		return t, corruptf(name, int64(t.sstSize)-n, "sstable footer checksum mismatch: computed %08x, stored %08x", got, t.tailCRC)
	}
	return t, nil
}

// errorOf classifies an error from pebble: an I/O error of our readable
// stays an I/O error; anything else pebble complains about is corruption
// of the file.
func errorOf(err error, name string) error {
	if err == nil {
		return nil
	}
	var ioe *ioError
	if errors.As(err, &ioe) {
		return fmt.Errorf("read layer file %s: %w", name, err)
	}
	return &CorruptionError{File: name, Offset: -1, Err: err}
}

// recoverCorruption turns a panic inside pebble into a CorruptionError.
// Pebble trusts the contents of blocks whose checksum matched; a crafted
// file could still make it panic, and a layer file is outside input.
func recoverCorruption(err *error, name string) {
	if r := recover(); r != nil {
		*err = corruptf(name, -1, "reading the sstable panicked: %v", r)
	}
}
