package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// maxBatch bounds the XLogData messages written between two fsyncs.
const maxBatch = 256

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

// received is one XLogData, its bytes copied out of the connection's buffer.
type received struct {
	start pgdata.LSN
	data  []byte
	// reply is set for a keepalive that asks for an immediate status.
	reply bool
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

	msgs := make(chan received, maxBatch)
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	// Runs before the deferred Close: the receiver must be gone first.
	defer func() {
		cancel()
		<-recvDone
	}()
	go func() {
		defer close(recvDone)
		for {
			m, err := conn.Receive(ctx)
			if err != nil {
				recvErr <- err
				return
			}
			var r received
			switch m := m.(type) {
			case *pgwire.XLogData:
				r = received{start: m.Start, data: append([]byte(nil), m.Data...)}
			case *pgwire.Keepalive:
				if !m.ReplyRequested {
					continue
				}
				r = received{reply: true}
			}
			select {
			case msgs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var batch []received
		select {
		case r := <-msgs:
			batch = append(batch, r)
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-msgs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		wrote := false
		for _, r := range batch {
			if r.reply {
				continue
			}
			if err := tl.AppendWAL(term, r.start, r.data); err != nil {
				return err
			}
			s.metrics.walReceived.Add(float64(len(r.data)))
			wrote = true
		}
		synced := time.Now()
		flush, err := tl.Sync()
		if err != nil {
			return err
		}
		if wrote {
			s.metrics.walFsync.Observe(time.Since(synced).Seconds())
		}
		if err := conn.SendStatus(ctx, pgwire.StandbyStatus{Written: flush, Flushed: flush, Applied: flush}); err != nil {
			return err
		}
	}
}
