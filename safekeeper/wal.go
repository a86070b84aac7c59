package safekeeper

import (
	"context"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/repo/walseg"
)

// walFiles is a timeline's WAL in segment files named as in pg_wal
// (walseg.Segments, in the timeline's directory beside its control file).
// The files are preallocated (walseg.OpenPreallocated): whole segments of
// zeros made ahead of need, written over and synced with fdatasync, so a
// file's length does not say where the WAL ends; after a restart the end
// is found by decoding (openWAL). It is not safe for concurrent use;
// Timeline serialises its callers.
type walFiles struct {
	segs *walseg.Segments
	// begin is the first LSN stored (0 when there is no WAL); end is the
	// LSN after the last byte written; synced the end of what is durable.
	begin, end, synced pgdata.LSN
}

// openWAL scans dir's segment files; begin is where the control file says
// the WAL begins (0: not recorded). A gap between segments is corruption.
//
// The end of the WAL is the end of the last complete, valid record
// (walseg's RecordEnd: page headers with the right address, CRCs),
// decoded from a record start in the last file but one. The files are cut
// there, to zeros, so that nothing torn or older is ever taken for WAL
// later, and what is kept is fsynced: bytes written by a process that was
// killed are in the page cache, and become the flush LSN only once they
// are durable. Why that end is never below anything acknowledged is in
// the package doc ("Finding the end of the WAL").
func openWAL(fs vfs.FS, dir string, segSize uint64, begin pgdata.LSN) (*walFiles, error) {
	segs, err := walseg.OpenPreallocated(fs, dir, segSize)
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
	// A recorded begin below the first file is from before a removal
	// that crashed before its control file was written (RemoveOldWAL):
	// the WAL begins at the first file then; otherwise where the control
	// file says, inside the first file perhaps (a compute's start).
	begin = max(begin, segs.Start(list[0]))
	end, err := segs.RecordEnd(context.Background(), begin)
	if err != nil {
		return nil, err
	}
	if err := segs.Truncate(end); err != nil {
		return nil, err
	}
	last := end.SegmentNo(segSize)
	for _, seg := range []uint64{last - 1, last} {
		if seg < list[0] || seg > list[len(list)-1] || (seg == last && end == segs.Start(seg)) {
			continue
		}
		if err := segs.SyncSegment(seg); err != nil {
			return nil, err
		}
	}
	w.begin, w.end, w.synced = begin, end, end
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
//
// The WAL then begins at a segment boundary, perhaps inside a record, and
// after a crash its end is found by decoding from the end of the rest of
// that record, where the page headers say it ends (walseg's RecordEnd):
// no CRC covers that rest, so a segment is made the first only once the
// rest of a record that runs into it is durable here; otherwise the one
// below stays too. (Bytes with no valid page header there, which only a
// test stores, are nothing RecordEnd would take for WAL.)
func (w *walFiles) removeBelow(lsn pgdata.LSN) (int, error) {
	segSize := w.segs.SegmentSize()
	keep := lsn.SegmentNo(segSize)
	if w.end > w.begin {
		keep = min(keep, (w.end - 1).SegmentNo(segSize))
	}
	for ; keep > w.begin.SegmentNo(segSize); keep-- {
		first, err := pgdata.FirstRecordStart(w.segs.Start(keep), w.synced, segSize, w.segs.ReadAt)
		if err == nil && first <= w.synced || err != nil && !errors.Is(err, pgdata.ErrNoRecordStart) {
			break
		}
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
