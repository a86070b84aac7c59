package walreceiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// ReplicationSlot is the physical replication slot the WAL receiver
// creates on its source, so that the compute keeps the WAL we have not
// flushed while we are down; and the application_name it connects with
// unless the connection string gives one (what the compute's
// synchronous_standby_names names).
const ReplicationSlot = "pageserver"

// Timing of the WAL receiver.
const (
	// statusInterval is how often a standby status update is sent when
	// nothing else prompts one (wal_receiver_status_interval's default).
	// When the source has been silent that long, the update asks for a
	// reply: a walsender that hears from us regularly sends nothing on
	// its own while idle (WalSndKeepaliveIfNecessary), but answers a
	// reply request with a keepalive (ProcessStandbyReplyMessage).
	statusInterval = 10 * time.Second
	// silenceTimeout ends a connection from which nothing has come for
	// this long, replies requested included.
	silenceTimeout = 60 * time.Second
	// appliedDelay is how long after the ingest moved the applied
	// position a status reports it, unless a flush report carried it
	// meanwhile. A status per ingested batch was a second wake-up of the
	// walsender (and of its compute, on the same cores) per commit when
	// the page server is the synchronous standby; delayed, a status
	// under load carries it with the next flush, and at rest
	// pg_stat_replication's replay_lsn is this late.
	appliedDelay = 20 * time.Millisecond
	// minBackoff and maxBackoff bound the wait before reconnecting.
	minBackoff = 200 * time.Millisecond
	maxBackoff = 10 * time.Second
	// maxBatch is how many bytes of WAL are written before they are synced
	// and acknowledged even if more are waiting.
	maxBatch = 16 << 20
)

// ErrSystemMismatch is the error of a source whose IDENTIFY_SYSTEM names
// another database system than the timeline's pg_control.
var ErrSystemMismatch = errors.New("the WAL source is another database system")

// Ingester files decoded WAL records into a timeline: WalIngest.
type Ingester interface {
	// Ingest applies one record; records come in WAL order from the
	// timeline's last record LSN.
	Ingest(ctx context.Context, rec *pgdata.Record) error
	// SystemID is the timeline's database system identifier.
	SystemID() uint64
}

// WalReceiverStatus is what a WAL receiver reports, for the HTTP API and
// metrics.
type WalReceiverStatus struct {
	// Source is the connection string of the compute WAL comes from
	// ("": none, or safekeepers).
	Source string
	// Safekeepers is the set of safekeepers (host:port) WAL comes from
	// instead of a compute (nil: none).
	Safekeepers []string
	// Safekeeper is the one of them currently streamed from ("": none).
	Safekeeper string
	// Connected is set while WAL is streaming.
	Connected bool
	// LastError is why the last connection failed or ended, if it did.
	LastError string
	// DecodeErrors counts the streams that ended with WAL that does not
	// decode (each followed by a reconnection with backoff).
	DecodeErrors uint64
	// Received is the end of the WAL written to the store.
	Received pgdata.LSN
	// Flushed is the flush position last reported (or being reported)
	// to the source: to a compute, the end of the last complete record
	// in fsynced WAL; to a safekeeper, the timeline's disk-consistent LSN.
	Flushed pgdata.LSN
	// Ingested is the timeline's last record LSN.
	Ingested pgdata.LSN
	// LastMessage is when the source last sent anything.
	LastMessage time.Time
	// StoreError is why the WAL store's last write, fsync or cut failed
	// (a full disk, an I/O error), while it fails: the receiver cut the
	// store back to its last synced end and streams again from there
	// with backoff; "" once a sync succeeds again. StoreErrorSince is
	// when it began failing.
	StoreError      string
	StoreErrorSince time.Time
	// StoreErrors counts the WAL store's failed writes, fsyncs and cuts.
	StoreErrors uint64
}

// WalReceiver pulls WAL for one timeline over the replication protocol
// from its source, keeps it in the timeline's WALStore and feeds it to the
// ingest. Records are ingested only once they are fsynced, so the
// repository never holds WAL the store could lose; and on a goroutine of
// their own (ingestWorker), so the flush reported to the source never
// waits for the ingest.
//
// Durability never depends on ingest. When the ingest of a record fails
// (a record it cannot apply, a failed write of the repository, an
// injected failure: FailIngestEnv), ingest stops there for the life of
// the receiver: the timeline says so (repo.Timeline.StopIngest, which
// makes waits for later LSNs fail at once), the page server's log says so
// once, and the receiver goes on receiving, storing, fsyncing and
// acknowledging WAL, so a compute that waits for us as its synchronous
// standby keeps committing. A page server restarted once the cause is
// fixed ingests the stored WAL from where the repository is durable.
//
// The source is either one compute (SetSource, the page service's
// callmemaybe) or a set of safekeepers (SetSafekeepers); one replaces the
// other. What the receiver reports as flushed differs:
//
//   - To a compute, flush is the end of the last complete record in the
//     fsynced WAL store: the compute may use the page server as a
//     synchronous standby, and its replication slot keeps the WAL above.
//   - To a safekeeper, flush is what the page server has made durable
//     (the timeline's DurableLSN: its remote-consistent LSN with remote
//     storage, else its disk-consistent LSN): the safekeepers keep their
//     WAL until then, so the page server can always stream again from its
//     repository's state, even without its WAL store, and even after it
//     lost its disk and restored from remote storage.
//
// From safekeepers the receiver streams from one at a time, the one whose
// IDENTIFY_SYSTEM xlogpos (its commit LSN) is highest, and switches when
// the connection ends or when no WAL has come for switchIdle while another
// safekeeper reports a higher commit LSN (walreceiver_safekeepers.go). A
// safekeeper sends WAL only up to its commit LSN, so the page server never
// ingests WAL that a later election could truncate.
type WalReceiver struct {
	tl *repo.Timeline
	// client is what it presents to safekeepers (token, CA).
	client auth.ClientOptions
	// disk, if set, learns whether the WAL store's writes find the disk
	// full (the page server's status shows it).
	disk  *vfs.DiskState
	ing   Ingester
	store *WALStore
	log   zerolog.Logger
	// storing is the write or fsync of the store in progress, for
	// StoreStalled.
	storing vfs.InProgress
	// lastMessage is when the source last sent anything (Unix ns; 0:
	// never): the status's LastMessage, kept apart so that the stream's
	// reader sets it without the lock.
	lastMessage atomic.Int64

	// statusInterval, silenceTimeout, probeInterval and switchIdle are
	// the constants of the same names; tests shorten them.
	statusInterval, silenceTimeout time.Duration
	probeInterval, switchIdle      time.Duration

	mu      sync.Mutex
	status  WalReceiverStatus
	changed chan struct{} // closed when the source changes
	// sendable is the end of the stored WAL a walsender may send
	// (sending.go), sendChanged is closed when it changes, and cuts
	// counts its cuts; sendStopped is set by StopSending.
	sendable    pgdata.LSN
	sendChanged chan struct{}
	cuts        pgwire.WALCuts
	sendStopped bool

	// sysID is the timeline's database system identifier (the
	// Ingester's, read once: the ingest worker owns the Ingester).
	sysID uint64

	// Owned by Run: the decoder of everything fed to the store, and the
	// records decoded but not taken for ingest yet. Records are decoded
	// as their bytes are written (so the decoder holds only the start of
	// the next record), but taken only once the store has synced them.
	dec     *pgdata.WALDecoder
	pending []*pgdata.Record
	// decoded is the end of the last record taken (or where the decoder
	// started): where the stored WAL is cut back to while ingest is
	// stopped (see rewind). recordEnd is the decoder's NextRecordLSN
	// when it was taken: the flush position a status may report.
	decoded, recordEnd pgdata.LSN
	// toSafekeeper is set while streaming from a safekeeper: it changes
	// the flush position reported (see above). gen is the tenant's
	// attach generation the safekeeper's connection names: the stream
	// ends when the tenant takes another one (errGenerationChanged).
	toSafekeeper bool
	gen          repo.Generation
	// sentApplied is the applied position of the last status sent.
	sentApplied pgdata.LSN
	// opened is the end of the stored WAL when the receiver was made:
	// fsynced complete records (OpenWALStore), which the page server may
	// have acknowledged before a restart.
	opened pgdata.LSN
}

// NewWalReceiver returns the receiver of tl, which ing ingests into and
// whose raw WAL store is store. Its source is the one stored in store.
// log should name the tenant and timeline.
func NewWalReceiver(tl *repo.Timeline, ing Ingester, store *WALStore, log zerolog.Logger) *WalReceiver {
	r := &WalReceiver{
		tl:      tl,
		ing:     ing,
		store:   store,
		log:     log,
		changed: make(chan struct{}),

		statusInterval: statusInterval,
		silenceTimeout: silenceTimeout,
		probeInterval:  probeInterval,
		switchIdle:     switchIdle,

		opened: store.Flushed(),
		sysID:  ing.SystemID(),

		sendable:    store.Flushed(),
		sendChanged: make(chan struct{}),
	}
	r.status.Source = store.Source()
	if set := store.Safekeepers(); set != nil {
		r.status.Safekeepers = set.Addrs
	}
	return r
}

// SetSource sets and persists the connection string of the compute WAL
// is pulled from, replacing any safekeepers; "" stops streaming. A running
// receiver drops its connection and uses the new source. The replication
// slot stays on the old source, which keeps WAL for it until the slot is
// dropped there.
func (r *WalReceiver) SetSource(connStr string) error {
	if connStr != "" {
		if _, err := pgconn.ParseConfig(connStr); err != nil {
			return fmt.Errorf("WAL source: %w", err)
		}
	}
	if err := r.store.SetSource(connStr); err != nil {
		return err
	}
	r.sourceChanged(func(st *WalReceiverStatus) { st.Source, st.Safekeepers = connStr, nil })
	return nil
}

// sourceChanged applies a change of source to the status and tells Run.
func (r *WalReceiver) sourceChanged(change func(st *WalReceiverStatus)) {
	r.mu.Lock()
	change(&r.status)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// Status returns the receiver's state.
func (r *WalReceiver) Status() WalReceiverStatus {
	r.mu.Lock()
	st := r.status
	st.Safekeepers = slices.Clone(st.Safekeepers)
	r.mu.Unlock()
	if ns := r.lastMessage.Load(); ns != 0 {
		st.LastMessage = time.Unix(0, ns)
	}
	st.Received = r.store.End()
	st.Ingested = r.tl.LastRecordLSN()
	return st
}

// Acknowledged is an LSN at or after the end of every record the page
// server may have acknowledged as flushed: the flush position last
// reported, or the end of the stored WAL when the receiver was made,
// whichever is later. Both are record boundaries of stored WAL, so
// ingest reaches it without any new WAL (unless it stops). A compute
// that continues the timeline, or a branch of its latest state, must
// start there or later to hold every acknowledged commit.
func (r *WalReceiver) Acknowledged() pgdata.LSN {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(r.status.Flushed, r.opened)
}

// setStatus changes the status under the lock.
func (r *WalReceiver) setStatus(change func(st *WalReceiverStatus)) {
	r.mu.Lock()
	change(&r.status)
	r.mu.Unlock()
}

// source returns the current source, a compute's connection string or a
// set of safekeepers (nil), and the channel closed when it changes.
func (r *WalReceiver) source() (string, *SafekeeperSet, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.Source, r.store.Safekeepers(), r.changed
}

// Run ingests the stored WAL the timeline does not have yet (after a
// crash, what came after its disk-consistent LSN), then streams from the
// source, reconnecting with backoff, until ctx ends. It returns ctx's
// error then, or the error that makes going on impossible (the store and
// the timeline disagree). A failed ingest is not such an error: streaming
// goes on without ingest (see WalReceiver). Nor is a failed write, fsync
// or cut of the WAL store (a full disk, an I/O error): the store is cut
// back to its last synced end (storeFailed), which is all that was ever
// reported flushed, and the receiver tries again with backoff, streaming
// from there; it goes on by itself once the disk takes writes again.
func (r *WalReceiver) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		err := r.catchUp(ctx)
		if err == nil {
			break
		}
		var se *storeError
		if !errors.As(err, &se) {
			r.setStatus(func(st *WalReceiverStatus) { st.LastError = err.Error() })
			return err
		}
		r.storeFailed(err, backoff)
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, maxBackoff)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	backoff = minBackoff
	for {
		src, set, changed := r.source()
		if src == "" && set == nil {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var streamed bool
		var err error
		if set != nil {
			streamed, err = r.streamSafekeepers(ctx, set, changed)
		} else {
			r.toSafekeeper = false
			streamed, err = r.stream(ctx, ctx, src, changed)
		}
		var bad *decodeError
		if errors.As(err, &bad) {
			// What follows the last record ingested is not WAL we can
			// use: cut it off now (not only at the next connection), so
			// that neither the status nor a restart sees it, and do not
			// let the stream count as a success for the backoff: a source
			// that keeps sending it is retried ever more slowly.
			streamed = false
			// Counted with its reason in one update: a reader of the
			// status never sees the count without the error.
			r.setStatus(func(st *WalReceiverStatus) { st.DecodeErrors, st.LastError = st.DecodeErrors+1, err.Error() })
			if _, rerr := r.rewind(); rerr != nil {
				err = rerr // a store error: retried below
			}
		}
		if ctx.Err() != nil {
			r.setStatus(func(st *WalReceiverStatus) { st.Connected = false })
			return ctx.Err()
		}
		select {
		case <-changed:
			// SetSource ended the connection: not a failure.
			r.setStatus(func(st *WalReceiverStatus) { st.Connected, st.LastError = false, "" })
			r.log.Info().Msg("WAL source changed")
			backoff = minBackoff
			continue
		default:
		}
		if errors.Is(err, errSafekeeperLags) {
			// Not a failure either: another safekeeper is ahead.
			r.setStatus(func(st *WalReceiverStatus) { st.Connected, st.LastError = false, "" })
			r.log.Info().Err(err).Msg("switching safekeeper")
			backoff = minBackoff
			continue
		}
		r.setStatus(func(st *WalReceiverStatus) { st.Connected, st.LastError = false, err.Error() })
		if se := (*storeError)(nil); errors.As(err, &se) {
			// The stream counts as no success: a disk that keeps
			// failing is tried ever more slowly.
			r.storeFailed(err, backoff)
		} else {
			if streamed {
				backoff = minBackoff
			}
			r.log.Warn().Err(err).Dur("retry_in", backoff).Msg("WAL streaming stopped")
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, maxBackoff)
		case <-changed:
			backoff = minBackoff
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// storeError is a failed write, fsync or cut of the WAL store: a full
// disk or an I/O error, not the source's doing. After a failed fsync
// whether the bytes are durable is unknown (PostgreSQL PANICs there); the
// receiver instead cuts the store back to its last good sync, which is
// all it reported flushed, and streams again from there (storeFailed).
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// storeFailed handles a failed write, fsync or cut of the WAL store (err,
// a *storeError): it says so (status, log, the disk's state) and cuts the
// store back to its last synced end (WALStore.Recover). A cut that fails
// too (it needs space) leaves the store refusing writes; the next
// connection's rewind cuts it again before anything is streamed.
func (r *WalReceiver) storeFailed(err error, retryIn time.Duration) {
	if r.disk != nil {
		r.disk.Note(err)
	}
	now := time.Now()
	r.setStatus(func(st *WalReceiverStatus) {
		if st.StoreError == "" {
			st.StoreErrorSince = now
		}
		st.StoreError, st.StoreErrors = err.Error(), st.StoreErrors+1
	})
	from, to, rerr := r.store.Recover()
	// The decoder was fed the bytes cut off: it starts again at the end
	// of the last record taken from it, which was synced (records are
	// taken only from synced WAL), so at or before the cut; the records
	// decoded after it are dropped.
	r.restartDecoder(r.decoded)
	ev := r.log.Error().Err(err).Dur("retry_in", retryIn).Stringer("flushed", to)
	if from != to {
		ev = ev.Stringer("cut_from", from)
	}
	if rerr != nil {
		if r.disk != nil {
			r.disk.Note(rerr)
		}
		ev.AnErr("cut_error", rerr).Msg("the WAL store failed and cannot be cut back to its synced end yet; nothing after it was acknowledged; trying again")
		return
	}
	ev.Msg("the WAL store failed: cut back to its synced end (nothing after it was acknowledged); streaming again from there")
}

// The WAL store's operations, as StoreStalled names them.
const (
	OpStoreWrite = "WAL store write"
	OpStoreSync  = "WAL store fsync"
)

// StoreStalled returns the WAL store's write or fsync in progress, and
// since when, if it began more than threshold before now; "" otherwise.
// While it lasts, nothing after the last fsync is reported flushed, so a
// compute that waits for the page server as its synchronous standby
// waits too.
func (r *WalReceiver) StoreStalled(now time.Time, threshold time.Duration) (op string, since time.Time) {
	return r.storing.Stalled(now, threshold)
}

// storeWorks notes that a sync of the WAL store succeeded: a failure
// before is over.
func (r *WalReceiver) storeWorks() {
	if r.disk != nil {
		r.disk.Note(nil)
	}
	r.mu.Lock()
	was, since := r.status.StoreError, r.status.StoreErrorSince
	r.status.StoreError, r.status.StoreErrorSince = "", time.Time{}
	r.mu.Unlock()
	if was != "" {
		r.log.Info().Time("failing_since", since).Msg("the WAL store takes writes again")
	}
}

// decodeError is WAL after the last record ingested that does not decode:
// a source's bytes, not our state. The receiver cuts them off (rewind) and
// connects again with backoff: a source may have sent the start of a
// record that its history then dropped, followed by other WAL (see
// rewind); asked again from the record end, it sends consistent WAL.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// catchUp starts the decoder at the timeline's last record LSN and
// ingests the stored WAL after it.
func (r *WalReceiver) catchUp(ctx context.Context) error {
	last := r.tl.LastRecordLSN()
	if r.store.Start() == 0 {
		if err := r.store.Init(last, r.tl.PrevRecordLSN()); err != nil {
			return &storeError{err}
		}
	}
	start, end := r.store.Start(), r.store.End()
	if last < start || last > end {
		return fmt.Errorf("timeline %s is at %v, outside its stored WAL (%v to %v)", r.tl.ID(), last, start, end)
	}
	r.restartDecoder(last)
	rd, err := r.store.Reader(last)
	if err != nil {
		return err
	}
	buf := make([]byte, walReadChunk)
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			r.dec.Feed(buf[:n])
			decErr := r.decode()
			if err := r.ingest(ctx, r.takePending()); err != nil {
				return err
			}
			if decErr != nil {
				// Streaming resumes after the last record ingested
				// anyway: what follows it goes now.
				r.log.Warn().Err(decErr).Msg("stored WAL after the last record does not decode: it will be streamed again")
				r.setStatus(func(st *WalReceiverStatus) { st.DecodeErrors++ })
				if _, err := r.rewind(); err != nil {
					return err
				}
				break
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read stored WAL: %w", err)
		}
	}
	if last != r.tl.LastRecordLSN() {
		r.log.Info().Stringer("from", last).Stringer("to", r.tl.LastRecordLSN()).Msg("ingested stored WAL")
	}
	return nil
}

// rewind cuts the stored WAL back to the end of the last record ingested,
// restarts the decoder there, and returns it: where streaming resumes, on
// every connection. The bytes after it belong to a record whose end has
// not come; they were never reported flushed (flush stops at record ends)
// and may be of a history that no longer exists. A compute that died in
// the middle of a record is replaced by one started from a basebackup at
// that record end, whose WAL differs from there on, and safekeepers that
// had the dead compute's WAL stream the new one's from there too. Asking
// for the WAL from the record end takes the source's history as it is.
//
// While ingest is stopped, the records after the timeline's last record
// are kept (they were acknowledged): the cut is at the end of the last
// record decoded instead.
func (r *WalReceiver) rewind() (pgdata.LSN, error) {
	last, end := r.tl.LastRecordLSN(), r.store.End()
	if r.tl.IngestStopped() != nil {
		last = r.decoded
	}
	if last > end || last == end && !r.store.CutPending() {
		// Nothing after the last record; or, past end, the rest of the
		// segment an XLOG_SWITCH record ended, which the decoder skips
		// as it comes.
		return end, nil
	}
	r.cutSendable(last)
	if err := r.store.Truncate(last); err != nil {
		return 0, &storeError{err}
	}
	r.log.Info().Stringer("from", end).Stringer("to", last).Msg("cut the stored WAL back to the end of the last record")
	r.restartDecoder(last)
	return last, nil
}

// restartDecoder makes a new decoder for the WAL from at, a record
// boundary, and forgets the records the old one decoded.
func (r *WalReceiver) restartDecoder(at pgdata.LSN) {
	r.dec = pgdata.NewWALDecoder(at, r.store.SegmentSize())
	r.dec.ExpectSystemID(r.sysID)
	r.pending = nil
	r.decoded, r.recordEnd = at, at
}

// decode moves every complete record fed so far to pending, up to the
// first that does not decode (a *decodeError).
func (r *WalReceiver) decode() error {
	for {
		rec, err := r.dec.Next()
		switch {
		case err == nil:
			r.pending = append(r.pending, rec)
		case errors.Is(err, pgdata.ErrNeedMoreWAL):
			return nil
		default:
			return &decodeError{fmt.Errorf("decode WAL of timeline %s: %w", r.tl.ID(), err)}
		}
	}
}

// takePending returns the records decoded since the last call, for
// ingest. Every byte fed to the decoder must be synced.
func (r *WalReceiver) takePending() []*pgdata.Record {
	recs := r.pending
	r.pending = nil
	if n := len(recs); n > 0 {
		r.decoded = recs[n-1].EndLSN
	}
	r.recordEnd = r.dec.NextRecordLSN()
	return recs
}

// ingest ingests recs, decoded records in WAL order. If one fails,
// ingest stops (stopIngest) and the rest are dropped: they stay in the
// store. It fails only with ctx's error, when a record's ingest was cut
// short by it. The ingest worker calls it, or catchUp before streaming.
func (r *WalReceiver) ingest(ctx context.Context, recs []*pgdata.Record) error {
	if r.tl.IngestStopped() != nil {
		return nil
	}
	for _, rec := range recs {
		if err := r.ing.Ingest(ctx, rec); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.stopIngest(rec, err)
			return nil
		}
	}
	return nil
}

// stopIngest stops the timeline's ingest before rec, whose ingest failed
// with err, and says so in the log, once.
func (r *WalReceiver) stopIngest(rec *pgdata.Record, err error) {
	reason := fmt.Sprintf("the record at %v (%v, info %#02x) failed: %v", rec.LSN, rec.Rmgr(), rec.Header.Info, err)
	stop := r.tl.StopIngest(reason)
	r.log.Error().Stringer("lsn", stop.LSN).Stringer("record_lsn", rec.LSN).Err(err).
		Msg("ingest stopped: WAL is still received and kept, reads after this LSN fail until the page server is restarted with the cause fixed")
}
