// Package walseg keeps WAL in segment files named as in pg_wal, on a
// vfs.FS: the one segment store of the safekeepers (a timeline's
// quorum-durable WAL) and of the page server (the raw WAL it receives
// without safekeepers).
//
// A segment's file holds the segment's bytes at their offsets. Segments
// knows files, offsets and durability; what the bytes mean (where records
// start and end, which LSNs a store holds) is its users' business, but
// for RecordEnd, the one decode that finds where a preallocated store's
// written WAL ends after a restart.
//
// Open's files are only as long as the WAL written into them, so the
// length of the last file says where the written WAL ends, and every
// fsync also commits a file size (a journal commit on ext4).
// OpenPreallocated's are whole segments from the start: a segment's file
// is made in the background before the WAL reaches it (the spare: zeros
// written for real, fsynced, renamed to spareName, the directory fsynced:
// not fallocate's unwritten extents, a write into which is again a
// metadata change), renamed into place when the WAL reaches it, and the
// writes into it are made durable with fdatasync, which then commits data
// only. The length of a file says nothing there: the bytes after the
// written WAL are zeros, and its user finds the end by decoding (the end
// of the last complete, valid record: RecordEnd). For that to be sound,
// Truncate leaves zeros, never older bytes, after the cut: the bytes
// after the end of the written WAL are zeros, or WAL written there and
// not synced before a crash (which the user's decoding judges, then cuts
// back to the end it found).
//
// In the last file, Truncate writes the zeros in place, so that a store
// on a full disk can still cut (a copy needs a segment of free space; a
// cut that removes later files copies, into the space they freed). It
// first zeroes, durably, the sector (which a disk writes whole) that
// holds the first byte after the cut that is not zero yet, then the rest.
// A crash in the second step may leave any mix of old bytes and zeros
// after that sector, and decoding still ends where it ends in the file
// cut whole: every byte of WAL that is not zero is checked by the decoder
// (a record's CRC covers it, or it lies in a page header whose checked
// fields share its sector), so the first record or page header that
// decoding meets after the cut and that is not what the whole cut leaves
// either lies in that sector, zeroed as in the whole cut, or covers it,
// and fails the check; what decoding reads up to there is the same in
// both. A crash in the first step leaves the file as it was (the sector
// is all old or all zeros, and the zeros before it were zeros already).
// A reader of the bytes being cut may see zeros among them, where it saw
// the old file before: they are no one's WAL any more either way.
//
// In both kinds of store a segment's file is made (or renamed into place)
// only once every byte written below it is durable (a Sync, once per
// segment): after a crash, the files below the last one hold the WAL as
// it was written, so a user may start decoding at a record start found
// from the page headers of the last file but one (skipping the rest of a
// record begun earlier, as PostgreSQL's XLogFindNextRecord does), and only
// the last file can end in a torn write (RecordEnd does so).
//
// # Directory entries
//
// fsync and fdatasync commit a file's bytes, not its name: a file created
// or renamed is durable under its name only once its directory is
// fsynced. The rule: every file the store creates or renames is fsynced,
// then its directory, before anything that depends on it is reported
// durable, and before WAL is written into a file whose name a crash could
// undo.
//
//   - A segment's file in an Open store is created, written, and Sync
//     fsyncs it, then the directory, before it reports the bytes durable:
//     a crash in between loses the file with only unreported bytes.
//   - The spare is written, fsynced, renamed to spareName, and the
//     directory fsynced (fillSpare): it is a whole segment of zeros or
//     absent.
//   - The spare renamed to a segment's name: the directory is fsynced
//     right after the rename, before the first write into the file. Were
//     the rename committed only by the Sync after the writes, a crash
//     between the file's fdatasync and the directory's fsync would leave
//     WAL under the spare's name, which the next segment takes for zeros:
//     RecordEnd could run on into it after WAL written there again.
//   - A cut's copy is written, fsynced and renamed over the segment, and
//     the directory fsynced before Truncate returns; removals (Truncate,
//     RemoveBelow) are fsynced before they return.
//   - A store opened again cannot tell whether the creates and renames of
//     a process killed before its Sync reached the disk (they are in the
//     kernel's page cache): its first Sync, Truncate or SyncSegment fsyncs
//     the directory before anything in it counts.
//
// A failed fsync of the directory breaks the store as a file's does. The
// cost is one directory fsync per segment, as the Sync after a new
// segment made it before (now before the first write instead of after),
// and one per store opened.
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

// tmpSuffix marks the temporary copy Truncate renames over a segment, and
// the spare being zero-filled; a leftover one is a crash's and is removed
// by List.
const tmpSuffix = ".cut"

// spareName is the file a preallocating Segments keeps ready for the next
// segment: a whole segment of zeros, durable with its directory entry.
const spareName = "spare.walseg"

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

	// preallocate says the files are whole segments (OpenPreallocated);
	// filling, if not nil, delivers the result of the background fill of
	// the spare.
	preallocate bool
	filling     chan error
}

// Open returns the segment store in dir, creating the directory if
// needed. segSize is the WAL segment size. Its files are as long as the
// WAL written into them.
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
		// A process killed before its Sync leaves the files it created
		// or renamed into place named so in the kernel only: the first
		// Sync (or Truncate, SyncSegment) of a store opened again makes
		// the directory durable before anything in it counts.
		dirDirty: true,
	}, nil
}

// OpenPreallocated is Open for a store whose segment files are whole
// segments, zero-filled ahead of need and written over with fdatasync
// (see the package doc): its user finds the end of the written WAL by
// decoding, never from a file's length. Files of an Open store (shorter
// ones) are taken as they are: writes that extend them are still made
// durable, as fdatasync commits a changed size too.
func OpenPreallocated(fs vfs.FS, dir string, segSize uint64) (*Segments, error) {
	s, err := Open(fs, dir, segSize)
	if err != nil {
		return nil, err
	}
	s.preallocate = true
	return s, nil
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
		if base, ok := strings.CutSuffix(name, tmpSuffix); ok && (len(base) == pgdata.WALFileNameLen || base == spareName) {
			if s.filling != nil && base == spareName {
				continue // being filled now
			}
			if err := s.fs.Remove(filepath.Join(s.dir, name)); err != nil {
				return nil, nil, fmt.Errorf("remove a crashed truncation's copy: %w", err)
			}
			continue
		}
		if name == spareName {
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
// it ends, relative to the segment's start, in a store Open opened (in a
// preallocated one, usually the segment size).
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
	if errors.Is(statErr, os.ErrNotExist) {
		// What was written below is made durable first (once per
		// segment): after a crash only the last file can hold a torn
		// write (see the package doc).
		if err := s.Sync(); err != nil {
			return nil, err
		}
	}
	if s.preallocate {
		if errors.Is(statErr, os.ErrNotExist) {
			if err := s.takeSpare(path); err != nil {
				return nil, fmt.Errorf("WAL segment %s: %w", s.Name(seg), err)
			}
			// The rename is made durable before anything is written
			// into the file: fdatasync commits the data, not the
			// name, so a crash between the two would leave the WAL
			// under the spare's name, which the next segment takes
			// for zeros (see the package doc).
			s.dirDirty = true
			if err := s.syncDir(); err != nil {
				return nil, err
			}
			statErr = nil
		}
		s.startFill()
	}
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
// files written since the last Sync, in order (fdatasync in a
// preallocated store), then the directory if an entry changed. Files
// other than the last one written are closed. After a failed fsync, this
// and every later write or sync fail (ErrBroken).
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
		sync := s.files[seg].Sync
		if s.preallocate {
			sync = s.files[seg].SyncData
		}
		if err := sync(); err != nil {
			s.broken = fmt.Errorf("%w: fsync %s: %v", ErrBroken, s.Name(seg), err)
			return s.broken
		}
		delete(s.dirty, seg)
	}
	if err := s.syncDir(); err != nil {
		return err
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

// SyncSegment fsyncs segment seg's file as it is, and the directory if
// an entry may not be durable yet: bytes that a process killed before its
// Sync wrote are in the kernel's page cache, and the file may have been
// created or renamed into place there only; both must be durable before a
// reopened store counts them.
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
	return s.syncDir()
}

// syncDir fsyncs the directory if an entry changed since it last was.
// A failure breaks the store, as a file's does: a later fsync of the
// directory may succeed without the entries.
func (s *Segments) syncDir() error {
	if !s.dirDirty {
		return nil
	}
	if err := vfs.SyncDir(s.fs, s.dir); err != nil {
		s.broken = fmt.Errorf("%w: %v", ErrBroken, err)
		return s.broken
	}
	s.dirDirty = false
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
// file (followed by zeros in a preallocated store) that is fsynced and
// renamed over the segment, so a crash leaves the old file or the new
// one, never a half; in a preallocated store's last file, the cut writes
// zeros in place instead, needing no space (zeroInPlace, and the package
// doc for why a crash in between leaves no half either).
func (s *Segments) Truncate(end pgdata.LSN) error {
	if err := s.Sync(); err != nil {
		return err
	}
	// The fill's directory sync would make the removals below durable
	// before the cut: a crash in between would leave neither the old
	// end nor the new one.
	s.waitFill()
	segs, _, err := s.List()
	if err != nil {
		return err
	}
	endSeg, off := end.SegmentNo(s.segSize), end.SegmentOffset(s.segSize)
	// Only in the last file may the cut zero in place: RecordEnd decodes
	// from the last file but one, which must hold the WAL as written
	// (see the package doc) until later files are gone for good.
	lastFile := len(segs) == 0 || segs[len(segs)-1] <= endSeg
	for i := len(segs) - 1; i >= 0 && segs[i] > endSeg; i-- {
		s.forget(segs[i])
		if err := s.fs.Remove(s.Path(segs[i])); err != nil {
			return fmt.Errorf("truncate WAL: %w", err)
		}
		s.dirDirty = true
	}
	size, err := s.Size(endSeg)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case uint64(size) > off:
		switch {
		case !s.preallocate:
			err = s.cut(endSeg, int64(off))
		case lastFile:
			err = s.zeroInPlace(endSeg, int64(off), size)
		default:
			// Synced above: the page cache holds what the disk does.
			var nonZero int64
			if nonZero, err = s.firstNonZero(endSeg, int64(off), size); err == nil && nonZero < size {
				err = s.cut(endSeg, int64(off))
			}
		}
		if err != nil {
			return fmt.Errorf("truncate WAL segment %s at %d: %w", s.Name(endSeg), off, err)
		}
	}
	return s.syncDir()
}

// firstNonZero returns where the first byte that is not zero lies in
// segment seg's file from off to size, its length, or size if none.
func (s *Segments) firstNonZero(seg uint64, off, size int64) (int64, error) {
	f, err := s.fs.Open(s.Path(seg))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, zeroChunk)
	for off < size {
		n := min(int64(len(buf)), size-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return 0, err
		}
		for i, c := range buf[:n] {
			if c != 0 {
				return off + int64(i), nil
			}
		}
		off += n
	}
	return size, nil
}

// firstZeroStep returns where zeroInPlace's first step ends: the end of
// the sector that holds the first byte from off on that is not zero, or
// off if none is.
func (s *Segments) firstZeroStep(seg uint64, off, size int64) (int64, error) {
	nonZero, err := s.firstNonZero(seg, off, size)
	if err != nil || nonZero == size {
		return off, err
	}
	return min(size, (nonZero/sectorSize+1)*sectorSize), nil
}

// sectorSize is the unit a disk writes whole: a crash leaves a sector as
// it was or as it was written, never part of each (PostgreSQL assumes as
// much of pg_control's 512 bytes).
const sectorSize = 512

// zeroInPlace writes zeros over segment seg's file from off to size, its
// length, in place, needing no space, in two steps each made durable with
// fdatasync: up to the end of the sector that holds the first byte after
// off that is not zero yet, then the rest. Once the first is durable,
// decoding stops where it stops in the file cut whole, whatever a crash
// leaves of the second (see the package doc); a crash before it leaves
// the file as it was. Its caller has synced the file.
func (s *Segments) zeroInPlace(seg uint64, off, size int64) error {
	first, err := s.firstZeroStep(seg, off, size)
	if err != nil || first == off {
		return err
	}
	f, err := s.fs.OpenReadWrite(s.Path(seg))
	if err != nil {
		return err
	}
	defer f.Close() // synced below: its close has nothing to report
	for _, end := range []int64{first, size} {
		if off >= end {
			break
		}
		if err := writeZeros(f, off, end); err != nil {
			return err
		}
		if err := f.SyncData(); err != nil {
			s.broken = fmt.Errorf("%w: fdatasync %s: %v", ErrBroken, s.Name(seg), err)
			return s.broken
		}
		off = end
	}
	return nil
}

// cut replaces segment seg's file with its first size bytes, followed by
// zeros up to the segment size in a preallocated store.
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
	if err == nil && s.preallocate {
		err = writeZeros(dst, size, int64(s.segSize))
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
		s.dirDirty = true
	}
	return n, s.syncDir()
}

// Close closes every open file. It does not sync: call Sync first for
// what must be durable. A fill of the spare under way is waited for.
func (s *Segments) Close() error {
	var first error
	s.waitFill()
	for seg, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = fmt.Errorf("close WAL segment %s: %w", s.Name(seg), err)
		}
		delete(s.files, seg)
	}
	s.dirty = map[uint64]bool{}
	return first
}

// zeroChunk is how many zeros a fill writes, and a check reads, at a time.
const zeroChunk = 1 << 20

// zeros is a chunk of zeros to write.
var zeros = make([]byte, zeroChunk)

// writeZeros writes zeros to f from off up to end.
func writeZeros(f vfs.File, off, end int64) error {
	for off < end {
		n := min(int64(len(zeros)), end-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// startFill starts making the spare in the background, unless a fill is
// under way or the spare exists.
func (s *Segments) startFill() {
	if s.filling != nil {
		return
	}
	if _, err := s.fs.Stat(filepath.Join(s.dir, spareName)); err == nil {
		return
	}
	done := make(chan error, 1)
	s.filling = done
	go func() { done <- s.fillSpare() }()
}

// waitFill waits for the fill of the spare under way, if one is. Its
// error is not the caller's: a failed fill leaves no spare, and the next
// segment makes its own (takeSpare).
func (s *Segments) waitFill() {
	if s.filling != nil {
		<-s.filling
		s.filling = nil
	}
}

// takeSpare renames the spare to path, making it first if there is none
// (once the fill under way, if one is, ends): the WAL has outrun the
// background fill, or the fill failed and is tried once more here, where
// its error is the write's. The caller makes the rename durable before it
// writes into the file.
func (s *Segments) takeSpare(path string) error {
	s.waitFill() // judged below: the spare is there or not
	spare := filepath.Join(s.dir, spareName)
	if _, err := s.fs.Stat(spare); errors.Is(err, os.ErrNotExist) {
		if err := s.fillSpare(); err != nil {
			return fmt.Errorf("preallocate a WAL segment: %w", err)
		}
	}
	return s.fs.Rename(spare, path)
}

// fillSpare makes the spare: a segment of zeros written in a temporary
// file, fsynced, renamed to spareName, and the directory fsynced, so that
// the spare is never anything but a whole, durable segment of zeros. It
// runs beside the writer: it touches no field of s but the constants.
func (s *Segments) fillSpare() error {
	tmp := filepath.Join(s.dir, spareName+tmpSuffix)
	f, err := s.fs.Create(tmp)
	if err != nil {
		return err
	}
	err = s.fs.Chmod(tmp, 0o600)
	if err == nil {
		err = writeZeros(f, 0, int64(s.segSize))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, filepath.Join(s.dir, spareName))
	}
	if err != nil {
		_ = s.fs.Remove(tmp) // best effort: List removes it otherwise
		return err
	}
	return vfs.SyncDir(s.fs, s.dir)
}
