package walreceiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/repo/walseg"
)

// The raw-WAL store of a timeline, for the page server without
// safekeepers: the WAL receiver writes what the compute streams into it and
// fsyncs it before reporting a flush, so the compute can wait for us as its
// synchronous standby, and after a crash the WAL that the repository had
// not made durable is ingested again from here.
//
// On disk, a directory holds WAL segment files named as in pg_wal
// (timeline 1) and the control file walstore.json. A segment file holds
// the segment's bytes at their offsets; it is a whole segment, zero-filled
// ahead of need and written over with fdatasync (walseg.OpenPreallocated),
// and the first segment has zeros before the store's start, which is
// wherever the timeline's WAL begins (its import or branch point, in
// mid-segment). The control file records that start and the WAL
// receiver's source; it is replaced atomically.
//
// A file's length does not say where the written WAL ends: after a
// restart the end is the end of the last complete, valid record (page
// headers with the right address, CRCs), decoded from the first record
// that starts in the last segment file but one (walseg's RecordEnd).
// Bytes after the end are zeros or WAL written and not synced (cut to
// zeros by load).
//
// Why that end is never below what was acknowledged: here the page server
// is the compute's only standby, so what it acknowledged is what a flush
// report said (WalReceiver's sendStatus), and a report never exceeds
// Flushed, nor the end of the last record decoded from the WAL below it.
// Every byte below Flushed was fsynced (fdatasync of blocks already
// allocated, and every byte below a segment was durable before that
// segment's file was renamed into place: walseg), so after a crash the
// files below the last one hold the WAL as written, the page headers
// RecordEnd starts from are genuine, and every record that ends at or
// below Flushed decodes whole with a good CRC: the decode reaches at
// least the last acknowledged record end. It may find more (WAL written
// and not yet synced that happened to reach the disk); that was never
// acknowledged and is the compute's WAL as sent, so keeping it is
// harmless. A torn or stale tail cannot look like a record: the bytes
// after the written WAL are zeros (walseg's Truncate and spares never
// leave older WAL there), and a record must also carry the right page
// address and its CRC. TestWALStoreTornTail and walseg's RecordEnd tests
// (TestRecordEnd*) cover the ends, TestWALStoreFaults a crash at each
// step and the page server's TestWalReceiverCrash a page server killed
// with SIGKILL mid-stream.
//
// A full disk: a write into a preallocated segment needs no space, so
// those writes and their fdatasync go on succeeding when the disk is
// full. The page server must not go on acknowledging commits then (the
// WAL would pile up for an ingest that cannot flush its layers, and
// flushing that backlog once space is freed would fill a tight disk
// again: TestPageserverDiskFull). So Sync first checks that the disk
// still takes a new block (checkSpace, at most once every
// spaceCheckInterval while it does): while it does not, Sync fails with
// the *vfs.DiskFullError, nothing more is reported flushed, the receiver
// handles it as any failed store write (storeFailed: status, the page
// server's disk state, backoff) and commits wait, as they did with a
// store whose writes needed space; they resume by themselves once space
// is freed.
//
// Retention: nothing is removed unless RemoveBelow is called. The page
// server calls it after each GC period (tenants.trimWAL) at the
// timeline's durable LSN (the remote-consistent LSN with remote storage,
// else the disk-consistent LSN) once the GC cut-off has passed it, so that
// branches at LSNs that can still be read (PrevRecord), time lookups in
// the PITR window (FindLSNForTime) and a restart keep working.

// walStoreControlFile is the name of the store's control file.
const walStoreControlFile = "walstore.json"

// spaceProbeFile is the file checkSpace writes and removes in the store's
// directory; one left by a crash is removed by load.
const spaceProbeFile = "walstore.probe"

// spaceCheckInterval is how long after a space check that succeeded Sync
// checks again: a full disk stops the flush reports within about that
// long, and the check's create, write and remove cost the commit path
// once per interval, not once per commit.
const spaceCheckInterval = time.Second

// walReadChunk is how much stored WAL a scan reads and decodes at a time.
const walReadChunk = 256 << 10

var (
	// ErrWALGap is returned by WALStore.Write for bytes that start after
	// the end of the stored WAL.
	ErrWALGap = errors.New("WAL write would leave a gap")
	// ErrWALMismatch is returned by WALStore.Write for bytes that overlap
	// stored WAL and differ from it.
	ErrWALMismatch = errors.New("WAL write differs from the stored WAL it overlaps")
	// ErrNoRecordEndsAt is returned by WALStore.PrevRecord for an LSN at
	// which no stored record ends.
	ErrNoRecordEndsAt = errors.New("not the end of a record in the stored WAL")
	// ErrNoCommitBefore is returned by WALStore.FindLSNForTime when no
	// stored commit record is as old as the time asked for.
	ErrNoCommitBefore = errors.New("no commit record at or before that time in the stored WAL")
	// ErrCutPending is returned by WALStore.Write and Sync while a cut
	// of the stored WAL (Truncate, Recover) that failed is still to be
	// done: the files hold bytes after End that must go first.
	ErrCutPending = errors.New("the stored WAL is still to be cut back")
	// errNoRecordStart says that no record starts in a segment: one
	// record covers all of it.
	errNoRecordStart = errors.New("no record starts in the segment")
)

// walStoreControl is the contents of the control file.
type walStoreControl struct {
	Version int `json:"version"`
	// Start is where the stored WAL begins: a record boundary; 0 for a
	// store nothing was written to yet.
	Start pgdata.LSN `json:"start"`
	// StartPrev is the start of the record that ends at Start, if known.
	StartPrev pgdata.LSN `json:"start_prev"`
	// Source is the WAL receiver's connection string ("": none).
	Source string `json:"source"`
	// Safekeepers is the WAL receiver's source when it is a set of
	// safekeepers instead (nil: none); at most one of the two is set.
	Safekeepers *SafekeeperSet `json:"safekeepers,omitempty"`
}

const walStoreControlVersion = 1

// WALStore keeps a timeline's raw WAL durably in a directory, in segment
// files named as in pg_wal; see the top of walstore.go. One writer calls
// Init, Write, Sync, SetSource, SetSafekeepers and RemoveBelow; any number of readers may
// call the rest at the same time.
type WALStore struct {
	fs      vfs.FS
	dir     string
	segSize uint64
	log     zerolog.Logger

	wmu  sync.Mutex // serialises the writer's operations and their I/O
	segs *walseg.Segments
	// spaceChecked is when checkSpace last found space, and
	// checkSpaceEvery is spaceCheckInterval (tests shorten it).
	spaceChecked    time.Time
	checkSpaceEvery time.Duration
	// uncut is set while a cut failed (Truncate, Recover): the files hold
	// bytes after end, so nothing may be written or synced before a cut
	// succeeds.
	uncut bool

	mu        sync.Mutex // protects the fields below, for readers
	ctl       walStoreControl
	end       pgdata.LSN // end of the written WAL
	flushed   pgdata.LSN // end of the fsynced WAL
	timeIndex map[uint64]segmentCommits
}

// OpenWALStore opens the store in dir on fs, creating it if needed. The
// store's end is the end of the last record that decodes completely from
// the stored bytes: bytes after it are a torn write and are cut off, and
// what remains is fsynced, so Flushed is that end.
func OpenWALStore(fs vfs.FS, dir string, segSize uint64, log zerolog.Logger) (*WALStore, error) {
	segs, err := walseg.OpenPreallocated(fs, dir, segSize)
	if err != nil {
		return nil, fmt.Errorf("open WAL store %s: %w", dir, err)
	}
	s := &WALStore{
		fs:        fs,
		dir:       dir,
		segSize:   segSize,
		log:       log.With().Str("wal_store", dir).Logger(),
		segs:      segs,
		timeIndex: make(map[uint64]segmentCommits),

		checkSpaceEvery: spaceCheckInterval,
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("open WAL store %s: %w", dir, err)
	}
	return s, nil
}

// Close closes the files the store holds open. It does not sync them.
func (s *WALStore) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.segs.Close()
}

// SegmentSize is the WAL segment size of the stored WAL.
func (s *WALStore) SegmentSize() uint64 { return s.segSize }

// Start is where the stored WAL begins (0 before Init).
func (s *WALStore) Start() pgdata.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctl.Start
}

// End is the end of the WAL written to the store, synced or not.
func (s *WALStore) End() pgdata.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// Flushed is the end of the WAL that is durable: fsynced with its
// directory.
func (s *WALStore) Flushed() pgdata.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushed
}

// Source is the WAL receiver's source stored with SetSource.
func (s *WALStore) Source() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctl.Source
}

// SetSource durably records the WAL receiver's source connection string,
// replacing a set of safekeepers.
func (s *WALStore) SetSource(connStr string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ctl := s.control()
	ctl.Source, ctl.Safekeepers = connStr, nil
	return s.writeControl(ctl)
}

// Safekeepers is the WAL receiver's set of safekeepers stored with
// SetSafekeepers (nil: none).
func (s *WALStore) Safekeepers() *SafekeeperSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctl.Safekeepers.clone()
}

// SetSafekeepers durably records the set of safekeepers the WAL receiver
// streams from, replacing a source connection string; nil records none.
func (s *WALStore) SetSafekeepers(set *SafekeeperSet) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ctl := s.control()
	ctl.Source, ctl.Safekeepers = "", set.clone()
	return s.writeControl(ctl)
}

// Init sets where the WAL of an empty store begins: start, a record
// boundary (the timeline's last record LSN), and prev, the start of the
// record that ends there (0 if not known). It must be called once, before
// the first Write.
func (s *WALStore) Init(start, prev pgdata.LSN) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ctl := s.control()
	if ctl.Start != 0 {
		return fmt.Errorf("init WAL store %s at %v: it already starts at %v", s.dir, start, ctl.Start)
	}
	if start == 0 || prev >= start {
		return fmt.Errorf("init WAL store %s: invalid start %v (previous record %v)", s.dir, start, prev)
	}
	ctl.Start, ctl.StartPrev = start, prev
	if err := s.writeControl(ctl); err != nil {
		return err
	}
	s.mu.Lock()
	s.end, s.flushed = start, start
	s.mu.Unlock()
	return nil
}

// control returns a copy of the control file's contents.
func (s *WALStore) control() walStoreControl {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctl
}

// writeControl replaces the control file atomically and durably, then
// makes ctl the store's.
func (s *WALStore) writeControl(ctl walStoreControl) error {
	ctl.Version = walStoreControlVersion
	b, err := json.MarshalIndent(ctl, "", "  ")
	if err != nil {
		return fmt.Errorf("encode WAL store control file: %w", err)
	}
	// 0600: the source may be a connection string with a password.
	if _, err := vfs.WriteFileAtomic(s.fs, filepath.Join(s.dir, walStoreControlFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write WAL store control file: %w", err)
	}
	s.mu.Lock()
	s.ctl = ctl
	s.mu.Unlock()
	return nil
}

// Write stores WAL bytes b that begin at lsn. They must continue the
// stored WAL: lsn at or below End (ErrWALGap otherwise), and bytes below
// End equal to the stored ones (ErrWALMismatch otherwise). They are
// durable only after Sync.
func (s *WALStore) Write(lsn pgdata.LSN, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	start, end := s.ctl.Start, s.end
	s.mu.Unlock()
	switch {
	case start == 0:
		return fmt.Errorf("write WAL at %v to %s: the store was not initialised", lsn, s.dir)
	case lsn > end:
		return fmt.Errorf("write WAL at %v to %s, which ends at %v: %w", lsn, s.dir, end, ErrWALGap)
	case lsn < start:
		return fmt.Errorf("write WAL at %v to %s, which starts at %v: %w", lsn, s.dir, start, ErrWALGap)
	}
	if lsn < end {
		n := min(int(end-lsn), len(b))
		stored := make([]byte, n)
		if err := s.readAt(stored, lsn); err != nil {
			return fmt.Errorf("write WAL at %v: %w", lsn, err)
		}
		if string(stored) != string(b[:n]) {
			return fmt.Errorf("write WAL at %v to %s: %w", lsn, s.dir, ErrWALMismatch)
		}
		lsn, b = lsn+pgdata.LSN(n), b[n:]
	}
	if len(b) == 0 {
		return nil
	}
	if s.uncut {
		return fmt.Errorf("write WAL at %v to %s: %w", lsn, s.dir, ErrCutPending)
	}
	if err := s.segs.WriteAt(b, lsn); err != nil {
		return fmt.Errorf("write WAL at %v to %s: %w", lsn, s.dir, err)
	}
	s.mu.Lock()
	s.end = lsn + pgdata.LSN(len(b))
	s.mu.Unlock()
	return nil
}

// Sync makes every written byte durable: it fsyncs the segment files
// written since the last Sync and, if a file was created, the directory;
// only then does Flushed advance to End. While the disk is full it fails
// with a *vfs.DiskFullError and Flushed stays, although the writes into
// the preallocated segments went through (see the top of walstore.go).
func (s *WALStore) Sync() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.uncut {
		return fmt.Errorf("WAL store %s: %w", s.dir, ErrCutPending)
	}
	if err := s.checkSpace(); err != nil {
		return fmt.Errorf("WAL store %s: %w", s.dir, err)
	}
	end := s.End()
	if err := s.segs.Sync(); err != nil {
		return fmt.Errorf("WAL store %s: %w", s.dir, err)
	}
	s.mu.Lock()
	s.flushed = end
	s.mu.Unlock()
	return nil
}

// checkSpace returns an error, a *vfs.DiskFullError for a full disk, if
// the store's file system does not take a new block: it creates
// spaceProbeFile, writes one block into it and removes it. It does so
// only if the last check that found space is checkSpaceEvery old. The
// write is not synced: file systems reserve the blocks of a write when it
// is made (tmpfs, and ext4 and XFS with delayed allocation), which is
// where a full disk fails it.
func (s *WALStore) checkSpace() error {
	now := time.Now()
	if !s.spaceChecked.IsZero() && now.Sub(s.spaceChecked) < s.checkSpaceEvery {
		return nil
	}
	p := filepath.Join(s.dir, spaceProbeFile)
	f, err := s.fs.Create(p)
	if err != nil {
		return fmt.Errorf("check for free space: %w", err)
	}
	_, werr := f.Write(spaceProbe[:])
	cerr := f.Close()
	rerr := s.fs.Remove(p)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("check for free space: %w", err)
	}
	s.spaceChecked = now
	return nil
}

// spaceProbe is what checkSpace writes: one block, not zeros, which a
// file system could store as a hole.
var spaceProbe = func() (b [4096]byte) {
	for i := range b {
		b[i] = 0xa5
	}
	return b
}()

// RemoveBelow forgets the stored WAL below lsn, a record boundary between
// Start and End (the timeline's disk-consistent LSN): the store then
// starts at lsn, and the segment files wholly below lsn's segment are
// removed. See the retention note at the top of walstore.go.
func (s *WALStore) RemoveBelow(lsn pgdata.LSN) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.removeBelow(lsn)
}

// TrimBelow forgets the stored WAL's whole segments below limit's: the
// store then starts at the first record that starts in limit's segment,
// at or before limit. Nothing happens if limit lies in the store's first
// segment, after its flushed end, or if no record starts in its segment
// before limit (a record longer than the segment ran over it).
func (s *WALStore) TrimBelow(limit pgdata.LSN) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ctl := s.control()
	seg := limit.SegmentNo(s.segSize)
	if limit > s.Flushed() || seg <= ctl.Start.SegmentNo(s.segSize) {
		return nil
	}
	start, err := s.recordStartIn(seg, limit)
	if errors.Is(err, errNoRecordStart) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trim WAL store %s below %v: %w", s.dir, limit, err)
	}
	return s.removeBelow(start)
}

// removeBelow is RemoveBelow, with s.wmu held.
func (s *WALStore) removeBelow(lsn pgdata.LSN) error {
	ctl := s.control()
	end := s.End()
	if lsn <= ctl.Start {
		return nil
	}
	if lsn > end {
		return fmt.Errorf("remove WAL below %v from %s: the store ends at %v", lsn, s.dir, end)
	}
	oldFirst := ctl.Start.SegmentNo(s.segSize)
	ctl.Start, ctl.StartPrev = lsn, 0
	if err := s.writeControl(ctl); err != nil {
		return err
	}
	s.mu.Lock()
	for seg := oldFirst; seg < lsn.SegmentNo(s.segSize); seg++ {
		delete(s.timeIndex, seg)
	}
	s.mu.Unlock()
	if _, err := s.segs.RemoveBelow(lsn.SegmentNo(s.segSize)); err != nil {
		return fmt.Errorf("WAL store %s: %w", s.dir, err)
	}
	return nil
}

// Truncate forgets the stored WAL from end on, a record boundary between
// Start and End: bytes of a record whose end never came, which no source
// will send again the same way if the compute that wrote them is gone.
// The cut is durable when Truncate returns; Flushed does not advance.
// A cut in the last segment file zeroes in place and needs no space; one
// that removes later files copies the kept part of its segment into the
// space they freed. If it fails, End is already end and the store takes no writes (ErrCutPending) until
// a Truncate at End succeeds.
func (s *WALStore) Truncate(end pgdata.LSN) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	start, storeEnd := s.ctl.Start, s.end
	s.mu.Unlock()
	if end < start || end > storeEnd {
		return fmt.Errorf("truncate WAL store %s at %v: it holds %v to %v", s.dir, end, start, storeEnd)
	}
	if end == storeEnd && !s.uncut {
		return nil
	}
	if err := s.cut(end); err != nil {
		return fmt.Errorf("truncate WAL store %s: %w", s.dir, err)
	}
	return nil
}

// CutPending says whether a cut failed (Truncate, Recover) and is still
// to be done: until a Truncate at End succeeds, the store refuses writes.
func (s *WALStore) CutPending() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.uncut
}

// Recover makes the store usable again after a write or an fsync failed
// (a full disk, an I/O error): what was written after the last Sync that
// succeeded may be lost or torn (after a failed fsync the kernel may have
// dropped the pages, and a second fsync would report success), and none
// of it was ever Flushed, so the files are cut back to Flushed, durably,
// and End is Flushed again. If the cut fails too, the store takes no
// writes until a Truncate at End succeeds (ErrCutPending). It returns
// where the store was cut back from and to.
func (s *WALStore) Recover() (from, to pgdata.LSN, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.segs.Reset()
	s.mu.Lock()
	start := s.ctl.Start
	from, to = s.end, s.flushed
	s.mu.Unlock()
	if start == 0 {
		return 0, 0, nil // nothing was ever written
	}
	if err := s.cut(to); err != nil {
		return from, to, fmt.Errorf("cut WAL store %s back to its synced end %v: %w", s.dir, to, err)
	}
	return from, to, nil
}

// cut makes end the store's end and cuts the files there; s.wmu is held.
// Until the files are cut, uncut stays set.
func (s *WALStore) cut(end pgdata.LSN) error {
	endSeg := end.SegmentNo(s.segSize)
	s.mu.Lock()
	s.end, s.flushed = end, min(s.flushed, end)
	for seg := range s.timeIndex {
		if seg >= endSeg {
			delete(s.timeIndex, seg)
		}
	}
	s.mu.Unlock()
	s.uncut = true
	if err := s.segs.Truncate(end); err != nil {
		return err
	}
	s.uncut = false
	return nil
}

// readAt reads len(b) stored bytes at lsn, which must be below End.
func (s *WALStore) readAt(b []byte, lsn pgdata.LSN) error {
	if err := s.segs.ReadAt(b, lsn); err != nil {
		return fmt.Errorf("read stored WAL at %v: %w", lsn, err)
	}
	return nil
}

// Reader returns a reader of the stored WAL from from up to the End as
// of now.
func (s *WALStore) Reader(from pgdata.LSN) (io.Reader, error) {
	s.mu.Lock()
	start, end := s.ctl.Start, s.end
	s.mu.Unlock()
	if from < start || from > end {
		return nil, fmt.Errorf("read WAL from %v in %s, which holds %v to %v", from, s.dir, start, end)
	}
	return &walStoreReader{s: s, pos: from, end: end}, nil
}

// walStoreReader reads stored WAL from pos to end.
type walStoreReader struct {
	s        *WALStore
	pos, end pgdata.LSN
}

func (r *walStoreReader) Read(p []byte) (int, error) {
	if r.pos >= r.end {
		return 0, io.EOF
	}
	n := min(len(p), int(r.end-r.pos), walReadChunk)
	if err := r.s.readAt(p[:n], r.pos); err != nil {
		return 0, err
	}
	r.pos += pgdata.LSN(n)
	return n, nil
}
