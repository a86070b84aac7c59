// Package walseg keeps WAL in segment files named as in pg_wal, on a
// vfs.FS: the one segment store of the safekeepers (a timeline's
// quorum-durable WAL) and of the page server (the raw WAL it receives
// without safekeepers).
//
// A segment's file holds the segment's bytes at their offsets and is only
// as long as the WAL written into it: files are not preallocated, so the
// length of the last file says where the written WAL ends. Segments knows
// files, offsets and durability; what the bytes mean (where records start
// and end, which LSNs a store holds) is its users' business.
//
// What it must never do: report written bytes durable before they and
// their directory entry are fsynced, report anything durable after an
// fsync failed (the kernel may have dropped the dirty pages: the store is
// then broken until Reset, after which its user cuts the unsynced bytes
// off), or leave a segment half-cut by a crash.
package walseg

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Timeline is the PostgreSQL timeline the segment files are named with:
// zenith's computes never switch timelines.
const Timeline = 1

// tmpSuffix marks the temporary copy Truncate renames over a segment; a
// leftover one is a crashed Truncate's and is removed by List.
const tmpSuffix = ".cut"

// ErrBroken wraps the error of every write and sync after an fsync
// failed: what the failed fsync covered may be lost, so nothing written
// since the last good sync may ever be reported durable by this Segments.
// Reset it and cut it back to the last good sync (Truncate) to go on.
var ErrBroken = errors.New("WAL segment store is broken by a failed fsync")

// Segments is one directory of WAL segment files. One writer calls
// WriteAt, Sync, Truncate, RemoveBelow and Close; ReadAt and Size may be
// called by any number of readers at the same time.
type Segments struct {
	fs      vfs.FS
	dir     string
	segSize uint64

	// The writer's state.
	files    map[uint64]vfs.File // open for writing, by segment
	dirty    map[uint64]bool     // written since the last Sync
	dirDirty bool                // an entry was created or removed since the last Sync
	broken   error               // the failed fsync, once one failed
}

// Open returns the segment store in dir, creating the directory if
// needed. segSize is the WAL segment size.
func Open(fs vfs.FS, dir string, segSize uint64) (*Segments, error) {
	if !pgdata.ValidWALSegmentSize(segSize) {
		return nil, fmt.Errorf("WAL segments in %s: invalid WAL segment size %d", dir, segSize)
	}
	if _, err := fs.Stat(dir); errors.Is(err, os.ErrNotExist) {
		// A new directory: its entry in the parent must be durable
		// before any segment in it is.
		if err := vfs.MkdirDurable(fs, dir, 0o700); err != nil {
			return nil, fmt.Errorf("WAL segments: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("WAL segments: %w", err)
	}
	return &Segments{
		fs: fs, dir: dir, segSize: segSize,
		files: map[uint64]vfs.File{}, dirty: map[uint64]bool{},
	}, nil
}

// Dir is the directory of the segment files.
func (s *Segments) Dir() string { return s.dir }

// SegmentSize is the WAL segment size.
func (s *Segments) SegmentSize() uint64 { return s.segSize }

// Name is the file name of segment seg.
func (s *Segments) Name(seg uint64) string { return pgdata.WALFileName(Timeline, seg, s.segSize) }

// Path is the file of segment seg.
func (s *Segments) Path(seg uint64) string { return filepath.Join(s.dir, s.Name(seg)) }

// Start is the LSN of the first byte of segment seg.
func (s *Segments) Start(seg uint64) pgdata.LSN { return pgdata.LSN(seg * s.segSize) }

// List returns the numbers of the segment files, ascending, and the names
// of the directory's other entries (for the caller to judge). A
// temporary file left by a Truncate that crashed is removed.
func (s *Segments) List() (segs []uint64, others []string, err error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list WAL segments: %w", err)
	}
	for _, name := range names {
		if base, ok := strings.CutSuffix(name, tmpSuffix); ok && len(base) == pgdata.WALFileNameLen {
			if err := s.fs.Remove(filepath.Join(s.dir, name)); err != nil {
				return nil, nil, fmt.Errorf("remove a crashed truncation's copy: %w", err)
			}
			continue
		}
		tli, seg, partial, err := pgdata.ParseWALFileName(name, s.segSize)
		if err != nil || partial || tli != Timeline {
			others = append(others, name)
			continue
		}
		segs = append(segs, seg)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, others, nil
}

// Size is the length of segment seg's file: where the WAL written into
// it ends, relative to the segment's start.
func (s *Segments) Size(seg uint64) (int64, error) {
	fi, err := s.fs.Stat(s.Path(seg))
	if err != nil {
		return 0, fmt.Errorf("WAL segment %s: %w", s.Name(seg), err)
	}
	if fi.Size() > int64(s.segSize) {
		return 0, &vfs.CorruptionError{File: s.Path(seg), Offset: -1, Err: fmt.Errorf("%d bytes, longer than a segment", fi.Size())}
	}
	return fi.Size(), nil
}

// WriteAt writes b at lsn, across segment files as needed, creating them.
// The bytes are durable only after Sync.
func (s *Segments) WriteAt(b []byte, lsn pgdata.LSN) error {
	if s.broken != nil {
		return s.broken
	}
	for len(b) > 0 {
		seg, off := lsn.SegmentNo(s.segSize), lsn.SegmentOffset(s.segSize)
		n := min(uint64(len(b)), s.segSize-off)
		f, err := s.openForWrite(seg)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(b[:n], int64(off)); err != nil {
			return fmt.Errorf("write WAL segment %s at %d: %w", s.Name(seg), off, err)
		}
		s.dirty[seg] = true
		lsn, b = lsn+pgdata.LSN(n), b[n:]
	}
	return nil
}

// openForWrite returns segment seg's file open for writing, creating it.
func (s *Segments) openForWrite(seg uint64) (vfs.File, error) {
	if f := s.files[seg]; f != nil {
		return f, nil
	}
	path := s.Path(seg)
	_, statErr := s.fs.Stat(path)
	f, err := s.fs.OpenReadWrite(path)
	if err != nil {
		return nil, fmt.Errorf("open WAL segment %s: %w", s.Name(seg), err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		s.dirDirty = true
		if err := s.fs.Chmod(path, 0o600); err != nil {
			f.Close()
			return nil, fmt.Errorf("WAL segment %s: %w", s.Name(seg), err)
		}
	}
	s.files[seg] = f
	return f, nil
}

// Sync makes every byte written so far durable: it fsyncs the segment
// files written since the last Sync, in order, then the directory if an
// entry changed. Files other than the last one written are closed. After
// a failed fsync, this and every later write or sync fail (ErrBroken).
func (s *Segments) Sync() error {
	if s.broken != nil {
		return s.broken
	}
	segs := make([]uint64, 0, len(s.dirty))
	for seg := range s.dirty {
		segs = append(segs, seg)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	for _, seg := range segs {
		if err := s.files[seg].Sync(); err != nil {
			s.broken = fmt.Errorf("%w: fsync %s: %v", ErrBroken, s.Name(seg), err)
			return s.broken
		}
		delete(s.dirty, seg)
	}
	if s.dirDirty {
		if err := vfs.SyncDir(s.fs, s.dir); err != nil {
			s.broken = fmt.Errorf("%w: %v", ErrBroken, err)
			return s.broken
		}
		s.dirDirty = false
	}
	if len(segs) > 0 {
		last := segs[len(segs)-1]
		for seg, f := range s.files {
			if seg != last {
				delete(s.files, seg)
				f.Close()
			}
		}
	}
	return nil
}

// SyncSegment fsyncs segment seg's file as it is: bytes that a process
// killed before its Sync wrote are in the kernel's page cache, and must be
// durable before a reopened store counts them.
func (s *Segments) SyncSegment(seg uint64) error {
	if s.broken != nil {
		return s.broken
	}
	f, err := s.fs.OpenReadWrite(s.Path(seg))
	if err != nil {
		return fmt.Errorf("open WAL segment %s: %w", s.Name(seg), err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.broken = fmt.Errorf("%w: fsync %s: %v", ErrBroken, s.Name(seg), err)
		return s.broken
	}
	return nil
}

// Reset makes a store that a failed fsync broke usable again: it closes
// every open file and forgets the failure and the writes not synced yet.
// Those writes are still in the files and must never count: the caller
// cuts the files back to where its last good Sync left them (Truncate)
// before it writes or reports anything durable again. The directory is
// synced again by the next Sync or Truncate, as entries created since the
// last good one may not be durable.
func (s *Segments) Reset() {
	for seg, f := range s.files {
		f.Close() // its writes are forgotten anyway: nothing to report
		delete(s.files, seg)
	}
	s.dirty = map[uint64]bool{}
	s.dirDirty = true
	s.broken = nil
}

// ReadAt fills b with the stored bytes at lsn, across segment files. A
// missing file or one that ends before b is filled is an error
// (io.ErrUnexpectedEOF for the latter). Each read opens the files it
// reads, so that readers never share a handle with the writer, which
// may replace or remove a file meanwhile.
func (s *Segments) ReadAt(b []byte, lsn pgdata.LSN) error {
	for len(b) > 0 {
		seg, off := lsn.SegmentNo(s.segSize), lsn.SegmentOffset(s.segSize)
		n := min(uint64(len(b)), s.segSize-off)
		f, err := s.fs.Open(s.Path(seg))
		if err != nil {
			return fmt.Errorf("read WAL segment %s: %w", s.Name(seg), err)
		}
		_, err = f.ReadAt(b[:n], int64(off))
		f.Close()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read WAL segment %s at %d: %w", s.Name(seg), off, err)
		}
		lsn, b = lsn+pgdata.LSN(n), b[n:]
	}
	return nil
}

// forget closes the writer's handle of segment seg, which is about to be
// removed or replaced.
func (s *Segments) forget(seg uint64) {
	if f := s.files[seg]; f != nil {
		f.Close()
		delete(s.files, seg)
	}
	delete(s.dirty, seg)
}

// Truncate removes the stored bytes at and after end, durably: the files
// of later segments are removed and end's segment file is cut at end
// (kept, maybe empty, if it exists). Unsynced writes below end are synced
// first. A cut is crash-safe: the kept prefix is copied to a temporary
// file that is fsynced and renamed over the segment, so a crash leaves
// the old file or the new one, never a half.
func (s *Segments) Truncate(end pgdata.LSN) error {
	if err := s.Sync(); err != nil {
		return err
	}
	segs, _, err := s.List()
	if err != nil {
		return err
	}
	endSeg, off := end.SegmentNo(s.segSize), end.SegmentOffset(s.segSize)
	for i := len(segs) - 1; i >= 0 && segs[i] > endSeg; i-- {
		s.forget(segs[i])
		if err := s.fs.Remove(s.Path(segs[i])); err != nil {
			return fmt.Errorf("truncate WAL: %w", err)
		}
		s.dirDirty = true
	}
	if size, err := s.Size(endSeg); err == nil && uint64(size) > off {
		if err := s.cut(endSeg, int64(off)); err != nil {
			return fmt.Errorf("truncate WAL segment %s at %d: %w", s.Name(endSeg), off, err)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if s.dirDirty {
		if err := vfs.SyncDir(s.fs, s.dir); err != nil {
			return err
		}
		s.dirDirty = false
	}
	return nil
}

// cut replaces segment seg's file with its first size bytes.
func (s *Segments) cut(seg uint64, size int64) error {
	s.forget(seg)
	path := s.Path(seg)
	src, err := s.fs.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := path + tmpSuffix
	dst, err := s.fs.Create(tmp)
	if err != nil {
		return err
	}
	err = s.fs.Chmod(tmp, 0o600)
	if err == nil {
		_, err = io.Copy(dst, io.NewSectionReader(src, 0, size))
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, path)
	}
	if err != nil {
		_ = s.fs.Remove(tmp) // best effort: List removes it otherwise
		return err
	}
	s.dirDirty = true
	return nil
}

// RemoveBelow removes the files of the segments below seg, durably, and
// returns how many it removed.
func (s *Segments) RemoveBelow(seg uint64) (int, error) {
	segs, _, err := s.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sg := range segs {
		if sg >= seg {
			break
		}
		s.forget(sg)
		if err := s.fs.Remove(s.Path(sg)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, fmt.Errorf("remove WAL segment: %w", err)
		}
		n++
	}
	if n > 0 {
		return n, vfs.SyncDir(s.fs, s.dir)
	}
	return 0, nil
}

// Close closes every open file. It does not sync: call Sync first for
// what must be durable.
func (s *Segments) Close() error {
	var first error
	for seg, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = fmt.Errorf("close WAL segment %s: %w", s.Name(seg), err)
		}
		delete(s.files, seg)
	}
	s.dirty = map[uint64]bool{}
	return first
}
