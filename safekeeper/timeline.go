package safekeeper

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// ErrTermChanged is returned for WAL or a compute from a term that is not
// the one this safekeeper voted for last.
var ErrTermChanged = errors.New("the safekeeper has voted for another term")

// ErrComputeSet is returned for a second compute in a term: a new compute
// needs a new election (see setCompute).
var ErrComputeSet = errors.New("the term has another compute")

// ErrWALRemoved is returned for a read of WAL below where the stored WAL
// begins: removed, as the page server holds it.
var ErrWALRemoved = errors.New("the WAL there has been removed")

// controlPersistInterval bounds how stale the control file's flush and
// commit LSNs may get while WAL streams in.
const controlPersistInterval = time.Second

// Timeline is one tenant/timeline's WAL and control state on this
// safekeeper. Its methods are safe for concurrent use.
type Timeline struct {
	Tenant   id.TenantID
	Timeline id.TimelineID
	dir      string
	log      zerolog.Logger
	// disk, if set, learns whether WAL writes find the disk full.
	disk *vfs.DiskState

	mu        sync.Mutex
	ctl       Control // in memory; the file has what persist wrote
	wal       *walFiles
	flush     pgdata.LSN
	persisted time.Time
	// changed is closed (and replaced) whenever flush or commit LSN or
	// the term moves, to wake walsenders and the streamer.
	changed chan struct{}
	// truncations counts the cuts of stored WAL by elections, and lastCut
	// is where the latest one cut it: a walsender compares them with the
	// WAL it has sent (see checkSent).
	truncations uint64
	lastCut     pgdata.LSN
	// staleReports counts the page server reports SetPageserverLSN
	// ignored as a stale generation's.
	staleReports uint64
	// stopStream ends the streaming from the current compute.
	stopStream func()
	closed     bool
}

// TimelineState is a snapshot of a timeline's state, as greet and the HTTP
// status report it.
type TimelineState struct {
	Tenant        id.TenantID   `json:"tenant_id"`
	Timeline      id.TimelineID `json:"timeline_id"`
	Term          uint64        `json:"term"`
	History       History       `json:"history"`
	BeginLSN      pgdata.LSN    `json:"begin_lsn"`
	FlushLSN      pgdata.LSN    `json:"flush_lsn"`
	CommitLSN     pgdata.LSN    `json:"commit_lsn"`
	PageserverLSN pgdata.LSN    `json:"pageserver_lsn"`
	// PageserverGeneration is the attach generation of the page server
	// whose report PageserverLSN is.
	PageserverGeneration uint32 `json:"pageserver_generation"`
	ComputeTerm          uint64 `json:"compute_term"`
	SystemID             uint64 `json:"system_id,string"`

	// truncations and lastCut are the Timeline's fields of the same
	// names, for a walsender; staleReports, for the metrics.
	truncations  uint64
	lastCut      pgdata.LSN
	staleReports uint64
}

// createTimeline makes an empty timeline in dir, its WAL on fs.
func createTimeline(fs vfs.FS, dir string, tenant id.TenantID, timeline id.TimelineID, log zerolog.Logger) (*Timeline, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create timeline directory: %w", err)
	}
	ctl := &Control{SegmentSize: pgdata.WALSegmentSize}
	if err := writeControl(dir, ctl); err != nil {
		return nil, err
	}
	if err := vfs.SyncDir(vfs.Default, dir+"/.."); err != nil {
		return nil, err
	}
	return openTimeline(fs, dir, tenant, timeline, log)
}

// openTimeline loads a timeline's control file and its WAL on fs.
func openTimeline(fs vfs.FS, dir string, tenant id.TenantID, timeline id.TimelineID, log zerolog.Logger) (*Timeline, error) {
	ctl, err := readControl(dir)
	if err != nil {
		return nil, err
	}
	if !pgdata.ValidWALSegmentSize(ctl.SegmentSize) {
		return nil, &CorruptionError{File: dir, Offset: -1, Err: fmt.Errorf("invalid segment size %d", ctl.SegmentSize)}
	}
	w, err := openWAL(fs, dir, ctl.SegmentSize, ctl.BeginLSN)
	if err != nil {
		return nil, err
	}
	tl := &Timeline{
		Tenant: tenant, Timeline: timeline, dir: dir,
		log:     log.With().Str("tenant", tenant.String()).Str("timeline", timeline.String()).Logger(),
		ctl:     *ctl,
		wal:     w,
		changed: make(chan struct{}),
	}
	if w.end == 0 {
		// No segment files: the WAL (if it was begun) is empty.
		w.setBegin(ctl.BeginLSN)
	} else if ctl.BeginLSN > w.begin {
		w.begin = ctl.BeginLSN
	}
	tl.flush = w.end
	if tl.flush < ctl.FlushLSN {
		// The control file is written only after the WAL it counts is
		// fsynced, so this is a flush LSN inside a record whose end
		// never came (the end found is the last complete record's, see
		// "Finding the end of the WAL" in the package doc), or a crash
		// during a truncation (files first, then the control file):
		// either way the control file follows the WAL. No term starts
		// above the end found (a term starts at a durable record end),
		// unless a truncation cut it, and the commit LSN is a byte
		// position that may lie in the record lost.
		tl.log.Warn().Stringer("control_flush_lsn", ctl.FlushLSN).Stringer("wal_end", tl.flush).
			Msg("WAL ends below the control file's flush LSN (a record cut short, or an interrupted truncation): the control file follows the WAL")
		tl.ctl.History = historyUpTo(tl.ctl.History, tl.flush)
		tl.ctl.FlushLSN = tl.flush
		if tl.ctl.CommitLSN > tl.flush {
			tl.ctl.CommitLSN = tl.flush
		}
		if err := tl.persistLocked(); err != nil {
			w.close()
			return nil, err
		}
	}
	return tl, nil
}

// historyUpTo drops the entries of h that start above lsn.
func historyUpTo(h History, lsn pgdata.LSN) History {
	out := History{}
	for _, e := range h {
		if e.Start <= lsn {
			out = append(out, e)
		}
	}
	return out
}

// State returns a snapshot of the timeline's state.
func (tl *Timeline) State() TimelineState {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.stateLocked()
}

func (tl *Timeline) stateLocked() TimelineState {
	return TimelineState{
		Tenant: tl.Tenant, Timeline: tl.Timeline,
		Term: tl.ctl.Term, History: append(History{}, tl.ctl.History...),
		BeginLSN: tl.wal.begin, FlushLSN: tl.flush, CommitLSN: tl.ctl.CommitLSN,
		PageserverLSN: tl.ctl.PageserverLSN, PageserverGeneration: tl.ctl.PageserverGeneration,
		ComputeTerm: tl.ctl.ComputeTerm, SystemID: tl.ctl.SystemID,
		truncations: tl.truncations, lastCut: tl.lastCut, staleReports: tl.staleReports,
	}
}

// Changed returns a channel closed at the next change of what a
// walsender may send (the commit LSN, capped by the flush LSN), of the
// term or of the WAL's history (a truncation). A flush alone changes
// nothing a walsender sends, since the commit LSN is never above the
// flush LSN: Sync closes it only if it would, and the walsenders are not
// woken at every fsync for nothing.
func (tl *Timeline) Changed() <-chan struct{} {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.changed
}

func (tl *Timeline) notifyLocked() {
	close(tl.changed)
	tl.changed = make(chan struct{})
}

// persistLocked writes the control file from the in-memory state.
func (tl *Timeline) persistLocked() error {
	tl.ctl.FlushLSN = tl.flush
	tl.ctl.BeginLSN = tl.wal.begin
	if err := writeControl(tl.dir, &tl.ctl); err != nil {
		return err
	}
	tl.persisted = time.Now()
	return nil
}

// Vote votes for term if it is higher than any term seen, durably, and
// stops streaming from an older term's compute. It returns whether the
// vote was granted and the state after it.
func (tl *Timeline) Vote(term uint64) (bool, TimelineState, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if term <= tl.ctl.Term {
		return false, tl.stateLocked(), nil
	}
	// WAL written but not yet fsynced may be reported flushed to the old
	// term's compute after this answer: make it part of the answer.
	flush, err := tl.wal.sync()
	if err != nil {
		return false, tl.stateLocked(), err
	}
	tl.flush = flush
	old := tl.ctl.Term
	tl.ctl.Term = term
	if err := tl.persistLocked(); err != nil {
		tl.ctl.Term = old
		return false, tl.stateLocked(), err
	}
	tl.stopStreamLocked()
	tl.notifyLocked()
	tl.log.Info().Uint64("term", term).Msg("voted")
	return true, tl.stateLocked(), nil
}

func (tl *Timeline) stopStreamLocked() {
	if tl.stopStream != nil {
		tl.stopStream()
		tl.stopStream = nil
	}
}

// AppendWAL stores WAL streamed by the compute of term, at the end of the
// WAL. It is not durable until Sync.
func (tl *Timeline) AppendWAL(term uint64, lsn pgdata.LSN, b []byte) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if term != tl.ctl.Term || tl.ctl.History.LastTerm() != term {
		return ErrTermChanged
	}
	if err := tl.wal.write(lsn, b); err != nil {
		return tl.noteDisk(err)
	}
	// A write into a preallocated segment needs no space: that it went
	// through says nothing of the disk (Sync says it).
	return nil
}

// noteDisk tells the safekeeper's disk state how a write went; it
// returns err.
func (tl *Timeline) noteDisk(err error) error {
	if tl.disk != nil {
		tl.disk.Note(err)
	}
	return err
}

// Sync fsyncs the WAL written so far and returns the new flush LSN. The
// control file follows at most controlPersistInterval later; while it
// cannot be written (a full disk: the WAL itself goes into preallocated
// segments, which need no space), Sync fails, so that the compute is not
// told of a flush, and the disk state says why.
func (tl *Timeline) Sync() (pgdata.LSN, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	flush, err := tl.wal.sync()
	if err != nil {
		return tl.flush, tl.noteDisk(err)
	}
	if flush != tl.flush {
		servable := min(tl.ctl.CommitLSN, tl.flush)
		tl.flush = flush
		if min(tl.ctl.CommitLSN, tl.flush) != servable {
			tl.notifyLocked()
		}
	}
	if time.Since(tl.persisted) > controlPersistInterval && tl.ctl.FlushLSN != tl.flush {
		if err := tl.persistLocked(); err != nil {
			return tl.flush, tl.noteDisk(err)
		}
	}
	tl.noteDisk(nil)
	return tl.flush, nil
}

// FlushLSN is the end of the fsynced WAL.
func (tl *Timeline) FlushLSN() pgdata.LSN {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.flush
}

// ReadWAL fills b with stored WAL from lsn on; the range must be at or
// below the flush LSN.
func (tl *Timeline) ReadWAL(b []byte, lsn pgdata.LSN) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.readWALLocked(b, lsn)
}

func (tl *Timeline) readWALLocked(b []byte, lsn pgdata.LSN) error {
	if lsn+pgdata.LSN(len(b)) > tl.flush {
		return fmt.Errorf("read of WAL up to %s beyond the flush LSN %s", lsn+pgdata.LSN(len(b)), tl.flush)
	}
	return tl.wal.readAt(b, lsn)
}

// SetSystem records the system id of the WAL (the first compute's) and
// refuses another. segSize must be the timeline's.
func (tl *Timeline) SetSystem(sysID uint64, segSize uint64) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if segSize != tl.ctl.SegmentSize {
		return fmt.Errorf("the compute's WAL segment size is %d, the timeline's %d", segSize, tl.ctl.SegmentSize)
	}
	if tl.ctl.SystemID == sysID {
		return nil
	}
	if tl.ctl.SystemID != 0 {
		return fmt.Errorf("the compute's system id %d is not the timeline's %d", sysID, tl.ctl.SystemID)
	}
	tl.ctl.SystemID = sysID
	return tl.persistLocked()
}

// AdvanceCommit raises the commit LSN (never above the flush LSN).
func (tl *Timeline) AdvanceCommit(lsn pgdata.LSN) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if lsn > tl.flush {
		lsn = tl.flush
	}
	if lsn <= tl.ctl.CommitLSN {
		return nil
	}
	tl.ctl.CommitLSN = lsn
	tl.notifyLocked()
	if time.Since(tl.persisted) > controlPersistInterval {
		return tl.persistLocked()
	}
	return nil
}

// SetPageserverLSN records lsn, the consistent LSN a page server of
// attach generation gen reported (0: a page server without generations).
// Old WAL is removed below it, so only the page server that holds the
// tenant now may move it: a report of a generation below the highest one
// seen is a stale page server's (its uploads are fenced, its LSN is not
// what the current one restores from), and is ignored: SetPageserverLSN
// returns false. A higher generation's report replaces the LSN, lower or
// not, and is persisted at once.
func (tl *Timeline) SetPageserverLSN(gen uint32, lsn pgdata.LSN) (bool, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	switch {
	case gen < tl.ctl.PageserverGeneration:
		tl.staleReports++
		return false, nil
	case gen > tl.ctl.PageserverGeneration:
		old := tl.ctl.PageserverGeneration
		tl.ctl.PageserverGeneration, tl.ctl.PageserverLSN = gen, lsn
		tl.log.Info().Uint32("generation", gen).Uint32("previous", old).Stringer("pageserver_lsn", lsn).
			Msg("a page server of a newer generation reports")
		return true, tl.persistLocked()
	case lsn <= tl.ctl.PageserverLSN:
		return true, nil
	}
	tl.ctl.PageserverLSN = lsn
	if time.Since(tl.persisted) > controlPersistInterval {
		return true, tl.persistLocked()
	}
	return true, nil
}

// AnnouncePageserverGeneration records that the tenant is being attached
// to a page server at generation gen, before that page server reports:
// from then on the reports of older generations are ignored, and no WAL
// is removed until generation gen reports what it holds (its LSN starts
// at 0). Without it, a stale page server's reports would still remove
// WAL between the attach and the new page server's first report. A
// generation not above the highest seen changes nothing (false).
func (tl *Timeline) AnnouncePageserverGeneration(gen uint32) (bool, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if gen <= tl.ctl.PageserverGeneration {
		return false, nil
	}
	old := tl.ctl.PageserverGeneration
	tl.ctl.PageserverGeneration, tl.ctl.PageserverLSN = gen, 0
	tl.log.Info().Uint32("generation", gen).Uint32("previous", old).Msg("a page server of a newer generation is announced: no WAL is removed until it reports")
	return true, tl.persistLocked()
}

// RemoveOldWAL removes whole segments below both the page server's
// consistent LSN and horizon (the lowest flush LSN of the peers).
func (tl *Timeline) RemoveOldWAL(horizon pgdata.LSN) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	limit := tl.ctl.PageserverLSN
	if horizon < limit {
		limit = horizon
	}
	if limit <= tl.wal.begin {
		return nil
	}
	n, err := tl.wal.removeBelow(limit)
	if err != nil || n == 0 {
		return err
	}
	tl.log.Info().Int("segments", n).Stringer("begin_lsn", tl.wal.begin).Msg("removed old WAL")
	return tl.persistLocked()
}

// Close persists the state and closes the files.
func (tl *Timeline) Close() error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.closed {
		return nil
	}
	tl.closed = true
	tl.stopStreamLocked()
	if _, err := tl.wal.sync(); err != nil {
		tl.wal.closeAll()
		return err
	}
	tl.flush = tl.wal.synced
	err := tl.persistLocked()
	tl.wal.closeAll()
	return err
}

func (tl *Timeline) segmentSize() uint64 {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.ctl.SegmentSize
}
