package walreceiver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// stream runs one replication connection to src until it fails, ctx ends
// or the source changes (changed is closed). streamed says whether WAL
// streaming started, which resets the reconnect backoff. The WAL's ingest
// is cut short only when runCtx, Run's context, ends: stream returns once
// every record it decoded is ingested.
func (r *WalReceiver) stream(ctx, runCtx context.Context, src string, changed <-chan struct{}) (streamed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := pgwire.ConnectReplicationAs(ctx, src, ReplicationSlot)
	if err != nil {
		return false, err
	}
	var ing *ingestWorker
	defer func() {
		cancel()
		closeCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		conn.Close(closeCtx)
		done()
		if ing != nil {
			// After the connection is closed: the source need not
			// wait for the ingest to learn that we are gone.
			ing.finish()
		}
	}()
	start, err := r.startStreaming(ctx, conn)
	if err != nil {
		return false, err
	}
	ing = r.startIngest(runCtx)
	r.setStatus(func(st *WalReceiverStatus) { st.Connected, st.LastError = true, "" })
	r.log.Info().Stringer("start", start).Msg("streaming WAL")
	if err := r.sendStatus(ctx, conn, false); err != nil {
		return true, err
	}
	f := &streamFlusher{r: r, conn: conn, ing: ing, wake: make(chan struct{}, 1)}
	f.lastMsg.Store(time.Now().UnixNano())
	flushErr := make(chan error, 1)
	flushDone := make(chan struct{})
	// Runs before the deferred Close and finish: the flusher must be
	// gone first.
	defer func() {
		cancel()
		<-flushDone
	}()
	go func() {
		defer close(flushDone)
		flushErr <- f.run(ctx)
		cancel() // ends the Receive in receive
	}()
	return true, f.receive(ctx, flushErr)
}

// A streamFlusher handles one connection's stream. The goroutine that
// reads it (receive) writes each XLogData to the store as it comes,
// straight from the connection's buffer. When nothing more of the stream
// has arrived (the common case with few clients: one commit's WAL, then
// quiet), it also fsyncs, hands the records to the ingest and answers
// with the flush position itself, with no hand-off to another goroutine.
// When more has arrived, it wakes the flusher goroutine (run) to fsync
// and answer meanwhile, and goes on reading: the flusher syncs once for
// everything written while it was busy (group flush). The flusher
// goroutine also sends the periodic status, reports the applied position
// when the ingest moved it and no flush report carried it within
// appliedDelay, and gives up on a silent walsender.
//
// Everything that touches the store, the decoder or the connection's
// writes holds mu, from a write to the store and from an fsync to the
// status that reports it: statuses go out in order, none reports a flush
// before its fsync returned, and a write that comes during an fsync waits
// for it and goes into the next one (the safekeeper's receiver works the
// same way).
type streamFlusher struct {
	r    *WalReceiver
	conn *pgwire.ReplicationConn
	ing  *ingestWorker
	wake chan struct{}
	// lastMsg is when the walsender last sent anything (Unix ns).
	lastMsg atomic.Int64

	mu sync.Mutex
	// wrote says WAL was written since the last fsync, and unsynced how
	// many bytes; owed, that the walsender asked for a reply since the
	// last status.
	wrote, owed bool
	unsynced    int
}

// receive reads the stream, writes its WAL and fsyncs and answers when
// nothing more is pending (or maxBatch bytes are unsynced), else wakes
// run, until the stream, a write or a flush fails or ctx ends. flushErr
// gives run's error: run cancels ctx when it fails, and that error is
// the one to return.
func (f *streamFlusher) receive(ctx context.Context, flushErr <-chan error) error {
	r := f.r
	for {
		m, err := f.conn.Receive(ctx)
		if err != nil {
			select {
			case ferr := <-flushErr:
				return ferr
			default:
			}
			if ctx.Err() == nil {
				// The stream ended (or broke): what was written
				// before is synced and reported first, as the
				// walsender may wait for it before it ends.
				f.mu.Lock()
				ferr := f.flushLocked(ctx)
				f.mu.Unlock()
				if ferr != nil {
					return ferr
				}
			}
			return err
		}
		now := time.Now()
		f.lastMsg.Store(now.UnixNano())
		r.lastMessage.Store(now.UnixNano())
		f.mu.Lock()
		switch v := m.(type) {
		case *pgwire.XLogData:
			if err := r.write(v); err != nil {
				f.mu.Unlock()
				return err
			}
			f.wrote = true
			f.unsynced += len(v.Data)
		case *pgwire.Keepalive:
			f.owed = f.owed || v.ReplyRequested
		}
		if !f.wrote && !f.owed {
			f.mu.Unlock()
			continue
		}
		if f.unsynced < maxBatch && f.conn.Pending() {
			f.mu.Unlock()
			f.signal()
			continue
		}
		err = f.flushLocked(ctx)
		f.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// signal wakes run without waiting.
func (f *streamFlusher) signal() { signal(f.wake) }

// run fsyncs and answers each time receive wakes it, sends a status at
// the status interval (asking for a reply when the walsender has been
// silent that long) and appliedDelay after the ingest moved the applied
// position, if no status reported it meanwhile (under load the next flush
// report carries it: every report wakes the source's walsender, whose
// compute shares the CPU with us), and gives up on a walsender silent
// for silenceTimeout. It returns when ctx ends or a flush or send fails.
func (f *streamFlusher) run(ctx context.Context) error {
	r := f.r
	ticker := time.NewTicker(r.statusInterval)
	defer ticker.Stop()
	applied := time.NewTimer(appliedDelay)
	applied.Stop()
	armed := false
	defer applied.Stop()
	for {
		var err error
		select {
		case <-f.wake:
			f.mu.Lock()
			err = f.flushLocked(ctx)
			f.mu.Unlock()
		case <-ticker.C:
			silent := time.Since(time.Unix(0, f.lastMsg.Load()))
			if silent > r.silenceTimeout {
				return fmt.Errorf("nothing from the WAL source for %v", silent.Round(time.Millisecond))
			}
			f.mu.Lock()
			err = r.sendStatus(ctx, f.conn, silent >= r.statusInterval)
			f.mu.Unlock()
		case <-f.ing.applied:
			if !armed {
				applied.Reset(appliedDelay)
				armed = true
			}
		case <-applied.C:
			armed = false
			f.mu.Lock()
			if !f.wrote && !f.owed && r.tl.LastRecordLSN() > r.sentApplied {
				err = r.sendStatus(ctx, f.conn, false)
			}
			f.mu.Unlock()
		case <-ctx.Done():
			return ctx.Err()
		}
		if err != nil {
			return err
		}
	}
}

// flushLocked syncs the store, hands the records it completes to the
// ingest and reports the flush (WalReceiver.flush), if WAL was written
// or a reply is owed since the last time: a wake-up whose work receive
// already did costs nothing. f.mu must be held.
func (f *streamFlusher) flushLocked(ctx context.Context) error {
	if !f.wrote && !f.owed {
		return nil
	}
	f.wrote, f.owed, f.unsynced = false, false, 0
	return f.r.flush(ctx, f.conn, f.ing)
}

// startStreaming checks that the source is our database system, makes
// sure our replication slot exists, and starts replication at the end of
// the last record ingested (rewind).
func (r *WalReceiver) startStreaming(ctx context.Context, conn *pgwire.ReplicationConn) (pgdata.LSN, error) {
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		return 0, err
	}
	if want := strconv.FormatUint(r.sysID, 10); sys.SystemID != want {
		return 0, fmt.Errorf("source's database system identifier is %s, timeline %s's is %s: %w", sys.SystemID, r.tl.ID(), want, ErrSystemMismatch)
	}
	if err := conn.CreatePhysicalSlot(ctx, ReplicationSlot); err != nil {
		return 0, err
	}
	start, err := r.rewind()
	if err != nil {
		return 0, err
	}
	if err := conn.StartReplication(ctx, ReplicationSlot, start, sys.Timeline); err != nil {
		return 0, err
	}
	return start, nil
}

// write stores one XLogData message, feeds the bytes the decoder has not
// seen yet to it and decodes the records they complete, which wait in
// pending until flush has synced them.
func (r *WalReceiver) write(x *pgwire.XLogData) error {
	end := r.storing.Begin(OpStoreWrite)
	err := r.store.Write(x.Start, x.Data)
	end()
	if err != nil {
		if errors.Is(err, ErrWALGap) || errors.Is(err, ErrWALMismatch) {
			return err // the source's WAL, not our disk
		}
		return &storeError{err}
	}
	if fed, end := r.dec.FeedLSN(), x.Start+pgdata.LSN(len(x.Data)); end > fed {
		r.dec.Feed(x.Data[fed-x.Start:])
		// WAL that does not decode ends the stream at the next flush,
		// whose decode returns the same error: the records before it
		// are synced and queued first.
		_ = r.decode()
	}
	return nil
}

// flush syncs the store, decodes the records it now completes, queues
// them for ing and reports the flush to the source. WAL that does not
// decode ends the stream (a *decodeError) after the records before it,
// which are queued: every record decoded is ingested before a new
// connection rewinds to the last one (see ingestWorker).
func (r *WalReceiver) flush(ctx context.Context, conn *pgwire.ReplicationConn, ing *ingestWorker) error {
	end := r.storing.Begin(OpStoreSync)
	err := r.store.Sync()
	end()
	if err != nil {
		return &storeError{err}
	}
	r.storeWorks()
	decErr := r.decode()
	ing.add(ctx, r.takePending())
	if err := r.sendStatus(ctx, conn, false); err != nil {
		return err
	}
	return decErr
}

// sendStatus reports the store's end as written, the end of the last
// complete record in the fsynced WAL as flushed (a restart resumes from
// such a record boundary: see WALStore's reopening), and the timeline's
// last record LSN as applied; reply asks the walsender to answer. To a
// safekeeper, flushed is the timeline's durable LSN instead (see
// WalReceiver): the safekeepers remove WAL below it, so with remote
// storage it is the remote-consistent LSN, the WAL above which a page
// server that lost its disk needs again.
func (r *WalReceiver) sendStatus(ctx context.Context, conn *pgwire.ReplicationConn, reply bool) error {
	flushed := min(r.store.Flushed(), r.recordEnd)
	r.setSendable(flushed)
	if r.toSafekeeper {
		if g := r.tl.Generation(); g != r.gen {
			return fmt.Errorf("%w from %v to %v", errGenerationChanged, r.gen, g)
		}
		flushed = min(flushed, r.tl.DurableLSN())
	}
	st := pgwire.StandbyStatus{
		Written:        r.store.End(),
		Flushed:        flushed,
		Applied:        r.tl.LastRecordLSN(),
		ReplyRequested: reply,
	}
	r.sentApplied = st.Applied
	// Recorded before it is sent: once the source has it, a compute may
	// acknowledge commits up to it, and Acknowledged must say so at once.
	r.setStatus(func(st *WalReceiverStatus) { st.Flushed = flushed })
	return conn.SendStatus(ctx, st)
}
