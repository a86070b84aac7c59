package safekeeper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// walTimeline is the PostgreSQL timeline in the names of the segment
// files: computes started from a basebackup always run on timeline 1.
const walTimeline = 1

// walFiles is a timeline's WAL in segment files named as in pg_wal. The
// files are not preallocated: a segment's file ends where its WAL does, so
// the end of the last file is the end of the WAL. It is not safe for
// concurrent use; Timeline serialises its callers.
type walFiles struct {
	dir     string
	segSize uint64
	// begin is the first LSN stored (0 when there is no WAL); end is the
	// LSN after the last byte written.
	begin, end pgdata.LSN
	// open is the segment file written last; dirty holds the files
	// written since the last sync.
	open      *os.File
	openSeg   uint64
	dirty     map[*os.File]bool
	dirDirty  bool
	synced    pgdata.LSN
	readFiles map[uint64]*os.File
}

// openWAL scans dir's segment files. A gap between segments is
// corruption. The last segment is fsynced first: bytes written by a
// process that was killed are in the page cache, and become the flush LSN
// only once they are durable.
func openWAL(dir string, segSize uint64) (*walFiles, error) {
	w := &walFiles{dir: dir, segSize: segSize, dirty: map[*os.File]bool{}, readFiles: map[uint64]*os.File{}}
	segs, err := w.segments()
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return w, nil
	}
	for i := 1; i < len(segs); i++ {
		if segs[i] != segs[i-1]+1 {
			return nil, &CorruptionError{File: dir, Offset: -1, Err: fmt.Errorf("WAL segment %s is missing", w.name(segs[i-1]+1))}
		}
	}
	last := segs[len(segs)-1]
	f, err := os.OpenFile(w.path(last), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open WAL segment: %w", err)
	}
	st, err := f.Stat()
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sync WAL segment %s: %w", w.name(last), err)
	}
	if uint64(st.Size()) > segSize {
		f.Close()
		return nil, &CorruptionError{File: w.path(last), Offset: -1, Err: fmt.Errorf("%d bytes, longer than a segment", st.Size())}
	}
	w.open, w.openSeg = f, last
	w.begin = pgdata.LSN(segs[0] * segSize)
	w.end = pgdata.LSN(last*segSize + uint64(st.Size()))
	w.synced = w.end
	return w, nil
}

// segments lists the segment numbers of the files in dir, ascending.
func (w *walFiles) segments() ([]uint64, error) {
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return nil, fmt.Errorf("list WAL segments: %w", err)
	}
	var segs []uint64
	for _, e := range ents {
		if len(e.Name()) != pgdata.WALFileNameLen {
			continue
		}
		_, seg, partial, err := pgdata.ParseWALFileName(e.Name(), w.segSize)
		if err != nil || partial {
			continue
		}
		segs = append(segs, seg)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, nil
}

func (w *walFiles) name(seg uint64) string {
	return pgdata.WALFileName(walTimeline, seg, w.segSize)
}

func (w *walFiles) path(seg uint64) string { return filepath.Join(w.dir, w.name(seg)) }

// setBegin makes an empty WAL start at lsn.
func (w *walFiles) setBegin(lsn pgdata.LSN) {
	w.begin, w.end, w.synced = lsn, lsn, lsn
}

// write appends b, which must start at the end of the WAL.
func (w *walFiles) write(lsn pgdata.LSN, b []byte) error {
	if lsn != w.end {
		return fmt.Errorf("WAL write at %s, but the WAL ends at %s", lsn, w.end)
	}
	for len(b) > 0 {
		seg := lsn.SegmentNo(w.segSize)
		off := lsn.SegmentOffset(w.segSize)
		n := uint64(len(b))
		if room := w.segSize - off; n > room {
			n = room
		}
		f, err := w.segmentForWrite(seg)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(b[:n], int64(off)); err != nil {
			return fmt.Errorf("write WAL segment %s: %w", w.name(seg), err)
		}
		w.dirty[f] = true
		lsn += pgdata.LSN(n)
		b = b[n:]
		w.end = lsn
	}
	return nil
}

func (w *walFiles) segmentForWrite(seg uint64) (*os.File, error) {
	if w.open != nil && w.openSeg == seg {
		return w.open, nil
	}
	f, err := os.OpenFile(w.path(seg), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create WAL segment: %w", err)
	}
	// The previous segment stays dirty until the next sync, which still
	// needs its handle.
	if w.open != nil && !w.dirty[w.open] {
		w.open.Close()
	}
	w.open, w.openSeg = f, seg
	w.dirDirty = true
	return f, nil
}

// sync makes everything written durable and returns the new flush LSN.
func (w *walFiles) sync() (pgdata.LSN, error) {
	for f := range w.dirty {
		if err := f.Sync(); err != nil {
			return w.synced, fmt.Errorf("fsync WAL segment %s: %w", filepath.Base(f.Name()), err)
		}
		delete(w.dirty, f)
		if f != w.open {
			f.Close()
		}
	}
	if w.dirDirty {
		if err := vfs.SyncDir(vfs.Default, w.dir); err != nil {
			return w.synced, err
		}
		w.dirDirty = false
	}
	w.synced = w.end
	return w.synced, nil
}

// readAt fills b with the WAL at lsn, which must be between begin and end.
func (w *walFiles) readAt(b []byte, lsn pgdata.LSN) error {
	if lsn < w.begin || lsn+pgdata.LSN(len(b)) > w.end {
		return fmt.Errorf("read of WAL [%s, %s) outside the stored [%s, %s)", lsn, lsn+pgdata.LSN(len(b)), w.begin, w.end)
	}
	for len(b) > 0 {
		seg := lsn.SegmentNo(w.segSize)
		off := lsn.SegmentOffset(w.segSize)
		n := uint64(len(b))
		if room := w.segSize - off; n > room {
			n = room
		}
		f, ok := w.readFiles[seg]
		if !ok {
			var err error
			if f, err = os.Open(w.path(seg)); err != nil {
				return fmt.Errorf("read WAL: %w", err)
			}
			w.readFiles[seg] = f
		}
		if _, err := f.ReadAt(b[:n], int64(off)); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read WAL segment %s at %d: %w", w.name(seg), off, err)
		}
		lsn += pgdata.LSN(n)
		b = b[n:]
	}
	return nil
}

// truncate removes the WAL at and above lsn, durably; lsn must not be
// below begin. Truncating an empty WAL makes it begin at lsn.
func (w *walFiles) truncate(lsn pgdata.LSN) error {
	if w.end == w.begin {
		w.setBegin(lsn)
		return nil
	}
	if lsn < w.begin {
		return fmt.Errorf("truncate WAL at %s, below its beginning %s", lsn, w.begin)
	}
	if lsn >= w.end {
		return nil
	}
	if _, err := w.sync(); err != nil {
		return err
	}
	w.closeAll()
	segs, err := w.segments()
	if err != nil {
		return err
	}
	keep := lsn.SegmentNo(w.segSize)
	for i := len(segs) - 1; i >= 0 && segs[i] > keep; i-- {
		if err := os.Remove(w.path(segs[i])); err != nil {
			return fmt.Errorf("truncate WAL: %w", err)
		}
	}
	if err := vfs.SyncDir(vfs.Default, w.dir); err != nil {
		return err
	}
	f, err := os.OpenFile(w.path(keep), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("truncate WAL: %w", err)
	}
	err = f.Truncate(int64(lsn.SegmentOffset(w.segSize)))
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("truncate WAL segment %s: %w", w.name(keep), err)
	}
	w.open, w.openSeg = f, keep
	w.end, w.synced = lsn, lsn
	return vfs.SyncDir(vfs.Default, w.dir)
}

// removeBelow removes the segment files that end at or below lsn, never
// the one holding the end of the WAL, and returns how many it removed.
func (w *walFiles) removeBelow(lsn pgdata.LSN) (int, error) {
	segs, err := w.segments()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, seg := range segs {
		if pgdata.LSN((seg+1)*w.segSize) > lsn || (w.open != nil && seg == w.openSeg) {
			break
		}
		if f, ok := w.readFiles[seg]; ok {
			f.Close()
			delete(w.readFiles, seg)
		}
		if err := os.Remove(w.path(seg)); err != nil {
			return n, fmt.Errorf("remove WAL segment: %w", err)
		}
		n++
		w.begin = pgdata.LSN((seg + 1) * w.segSize)
	}
	if n > 0 {
		return n, vfs.SyncDir(vfs.Default, w.dir)
	}
	return 0, nil
}

func (w *walFiles) closeAll() {
	for seg, f := range w.readFiles {
		f.Close()
		delete(w.readFiles, seg)
	}
	for f := range w.dirty {
		f.Close()
		delete(w.dirty, f)
	}
	if w.open != nil {
		w.open.Close()
		w.open = nil
	}
}

// close syncs and closes the files.
func (w *walFiles) close() error {
	_, err := w.sync()
	w.closeAll()
	return err
}
