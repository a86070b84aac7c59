package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zenithdb/zenith/pgwire"
)

// startStreaming starts streaming tl's WAL from the compute of its current
// term, if it has one and Run is running (Run starts the others).
func (s *Safekeeper) startStreaming(tl *Timeline) {
	term, connStr, ok := tl.computeToStream()
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx == nil {
		return
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	if !tl.setStreamStop(term, cancel) {
		cancel()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.stream(ctx, tl, term, connStr)
	}()
}

// stream keeps a replication connection to the compute of term, with
// backoff, until ctx ends or the term moves on; it never reconnects to a
// compute of an older term.
func (s *Safekeeper) stream(ctx context.Context, tl *Timeline, term uint64, connStr string) {
	log := tl.log.With().Uint64("term", term).Logger()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := s.streamOnce(ctx, tl, term, connStr)
		if ctx.Err() != nil || errors.Is(err, ErrTermChanged) {
			log.Info().Msg("stopped streaming from the compute")
			return
		}
		log.Warn().Err(err).Dur("retry_in", backoff).Msg("streaming from the compute failed")
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// withApplicationName sets application_name in a libpq connection string
// (keyword/value or URL form).
func withApplicationName(connStr, name string) string {
	if strings.HasPrefix(connStr, "postgres://") || strings.HasPrefix(connStr, "postgresql://") {
		sep := "?"
		if strings.Contains(connStr, "?") {
			sep = "&"
		}
		return connStr + sep + "application_name=" + name
	}
	return connStr + " application_name=" + name
}

// streamOnce runs one replication connection to the compute.
func (s *Safekeeper) streamOnce(ctx context.Context, tl *Timeline, term uint64, connStr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	name := "safekeeper" + strconv.FormatUint(s.cfg.ID, 10)
	conn, err := pgwire.ConnectReplication(ctx, withApplicationName(connStr, name))
	if err != nil {
		return err
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		conn.Close(cctx)
	}()
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		return err
	}
	sysID, err := strconv.ParseUint(sys.SystemID, 10, 64)
	if err != nil {
		return fmt.Errorf("compute's system id %q: %w", sys.SystemID, err)
	}
	if err := tl.SetSystem(sysID, tl.segmentSize()); err != nil {
		return err
	}
	slot := "safekeeper_" + strconv.FormatUint(s.cfg.ID, 10)
	if err := conn.CreatePhysicalSlot(ctx, slot); err != nil {
		return err
	}
	// Resume at the flush LSN, a byte position that may lie inside a
	// record. That is sound because the compute is the one whose WAL we
	// hold: a term has one compute (setCompute), the same PostgreSQL
	// after a restart keeps the WAL its walsender sent (it sends only
	// flushed WAL), and a new compute comes only with a new term, whose
	// election truncated our WAL to the end of a complete record where
	// that compute's basebackup starts.
	start := tl.FlushLSN()
	if err := conn.StartReplication(ctx, slot, start, sys.Timeline); err != nil {
		return err
	}
	tl.log.Info().Uint64("term", term).Stringer("start", start).Msg("streaming WAL from the compute")

	// This goroutine writes each XLogData as it comes, straight from the
	// connection's buffer. When nothing more of the stream has arrived
	// (the common case with few clients: one commit's WAL, then quiet),
	// it fsyncs and answers with the flush LSN itself, with no hand-off
	// to another goroutine. When more has arrived, it wakes the flusher
	// goroutine to fsync meanwhile and goes on reading; the flusher
	// fsyncs once for everything written while it was busy (group
	// flush). Either holds flushMu from its fsync to its reply, so
	// replies go out in order; the fsync holds the timeline, so a write
	// that comes meanwhile waits for it and goes into the next one. A
	// status never reports a flush before the fsync that made it.
	f := &flusher{s: s, tl: tl, conn: conn, wake: make(chan struct{}, 1)}
	syncErr := make(chan error, 1)
	syncDone := make(chan struct{})
	// Runs before the deferred Close: the flusher must be gone first.
	defer func() {
		cancel()
		<-syncDone
	}()
	go func() {
		defer close(syncDone)
		syncErr <- f.run(ctx)
		cancel() // ends the Receive below
	}()
	for {
		m, err := conn.Receive(ctx)
		if err != nil {
			select {
			case err = <-syncErr:
			default:
			}
			return err
		}
		switch m := m.(type) {
		case *pgwire.XLogData:
			if err := tl.AppendWAL(term, m.Start, m.Data); err != nil {
				return err
			}
			s.metrics.walReceived.Add(float64(len(m.Data)))
			f.wrote.Store(true)
		case *pgwire.Keepalive:
			if !m.ReplyRequested {
				continue
			}
			f.owed.Store(true)
		}
		if conn.Pending() || !f.mu.TryLock() {
			f.signal()
			continue
		}
		err = f.syncAndReplyLocked(ctx)
		f.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// A flusher fsyncs a timeline's WAL and answers the compute with the new
// flush LSN, on the receiving goroutine (syncAndReplyLocked) or on its own
// (run) when woken.
type flusher struct {
	s    *Safekeeper
	tl   *Timeline
	conn *pgwire.ReplicationConn
	wake chan struct{}
	// mu is held from an fsync to the status that reports it.
	mu sync.Mutex
	// wrote says WAL was written since the last fsync; owed, that the
	// compute asked for a reply since the last one.
	wrote, owed atomic.Bool
}

// signal wakes run without waiting.
func (f *flusher) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run fsyncs and replies each time it is woken, until ctx ends or a sync
// or send fails.
func (f *flusher) run(ctx context.Context) error {
	for {
		select {
		case <-f.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
		f.mu.Lock()
		err := f.syncAndReplyLocked(ctx)
		f.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// syncAndReplyLocked fsyncs the WAL and sends the compute a status with
// the new flush LSN, if WAL was written or a reply is owed since the last
// time (a wake-up whose work the receiving goroutine already did costs
// nothing). f.mu must be held.
func (f *flusher) syncAndReplyLocked(ctx context.Context) error {
	wrote := f.wrote.Swap(false)
	owed := f.owed.Swap(false)
	if !wrote && !owed {
		return nil
	}
	synced := time.Now()
	flush, err := f.tl.Sync()
	if err != nil {
		return err
	}
	if wrote {
		f.s.metrics.walFsync.Observe(time.Since(synced).Seconds())
	}
	return f.conn.SendStatus(ctx, pgwire.StandbyStatus{Written: flush, Flushed: flush, Applied: flush})
}
