package safekeeper

import (
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/repo/walseg"
)

// walFiles is a timeline's WAL in segment files named as in pg_wal
// (walseg.Segments, in the timeline's directory beside its control file).
// The files are not preallocated: a segment's file ends where its WAL
// does, so the end of the last file is the end of the WAL. It is not safe
// for concurrent use; Timeline serialises its callers.
type walFiles struct {
	segs *walseg.Segments
	// begin is the first LSN stored (0 when there is no WAL); end is the
	// LSN after the last byte written; synced the end of what is durable.
	begin, end, synced pgdata.LSN
}

// openWAL scans dir's segment files. A gap between segments is
// corruption. The last segment is fsynced first: bytes written by a
// process that was killed are in the page cache, and become the flush LSN
// only once they are durable.
func openWAL(fs vfs.FS, dir string, segSize uint64) (*walFiles, error) {
	segs, err := walseg.Open(fs, dir, segSize)
	if err != nil {
		return nil, err
	}
	w := &walFiles{segs: segs}
	list, _, err := segs.List()
	if err != nil || len(list) == 0 {
		return w, err
	}
	for i := 1; i < len(list); i++ {
		if list[i] != list[i-1]+1 {
			return nil, &CorruptionError{File: dir, Offset: -1, Err: fmt.Errorf("WAL segment %s is missing", segs.Name(list[i-1]+1))}
		}
	}
	last := list[len(list)-1]
	size, err := segs.Size(last)
	if err != nil {
		return nil, err
	}
	if err := segs.SyncSegment(last); err != nil {
		return nil, err
	}
	w.begin = segs.Start(list[0])
	w.end = segs.Start(last) + pgdata.LSN(size)
	w.synced = w.end
	return w, nil
}

// setBegin makes an empty WAL start at lsn.
func (w *walFiles) setBegin(lsn pgdata.LSN) {
	w.begin, w.end, w.synced = lsn, lsn, lsn
}

// write appends b, which must start at the end of the WAL.
func (w *walFiles) write(lsn pgdata.LSN, b []byte) error {
	if lsn != w.end {
		return fmt.Errorf("WAL write at %s, but the WAL ends at %s", lsn, w.end)
	}
	if err := w.segs.WriteAt(b, lsn); err != nil {
		return err
	}
	w.end = lsn + pgdata.LSN(len(b))
	return nil
}

// sync makes everything written durable and returns the new flush LSN.
func (w *walFiles) sync() (pgdata.LSN, error) {
	if err := w.segs.Sync(); err != nil {
		return w.synced, err
	}
	w.synced = w.end
	return w.synced, nil
}

// readAt fills b with the WAL at lsn, which must be between begin and end.
func (w *walFiles) readAt(b []byte, lsn pgdata.LSN) error {
	if lsn < w.begin {
		return fmt.Errorf("read of WAL [%s, %s), below where the stored WAL begins, %s: %w", lsn, lsn+pgdata.LSN(len(b)), w.begin, ErrWALRemoved)
	}
	if lsn+pgdata.LSN(len(b)) > w.end {
		return fmt.Errorf("read of WAL [%s, %s) outside the stored [%s, %s)", lsn, lsn+pgdata.LSN(len(b)), w.begin, w.end)
	}
	return w.segs.ReadAt(b, lsn)
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
	if err := w.segs.Truncate(lsn); err != nil {
		return fmt.Errorf("truncate WAL at %s: %w", lsn, err)
	}
	w.end, w.synced = lsn, lsn
	return nil
}

// removeBelow removes the segment files that end at or below lsn, never
// the one holding the end of the WAL, and returns how many it removed.
func (w *walFiles) removeBelow(lsn pgdata.LSN) (int, error) {
	segSize := w.segs.SegmentSize()
	keep := lsn.SegmentNo(segSize)
	if w.end > w.begin {
		keep = min(keep, (w.end - 1).SegmentNo(segSize))
	}
	n, err := w.segs.RemoveBelow(keep)
	if n > 0 {
		w.begin = max(w.begin, w.segs.Start(keep))
	}
	return n, err
}

// closeAll closes the files without syncing them.
func (w *walFiles) closeAll() { w.segs.Close() }

// close syncs and closes the files.
func (w *walFiles) close() error {
	_, err := w.sync()
	w.closeAll()
	return err
}
