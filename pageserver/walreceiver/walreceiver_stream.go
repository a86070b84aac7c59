package walreceiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// stream runs one replication connection to src until it fails, ctx ends
// or the source changes (changed is closed). streamed says whether WAL
// streaming started, which resets the reconnect backoff.
func (r *WalReceiver) stream(ctx context.Context, src string, changed <-chan struct{}) (streamed bool, err error) {
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
	msgs := make(chan any, 64)
	received := make(chan struct{})
	defer func() {
		cancel()
		<-received
		closeCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		conn.Close(closeCtx)
		done()
	}()
	start, err := r.startStreaming(ctx, conn)
	if err != nil {
		close(received)
		return false, err
	}
	go r.receive(ctx, conn, msgs, received)
	r.setStatus(func(st *WalReceiverStatus) { st.Connected, st.LastError = true, "" })
	r.log.Info().Stringer("start", start).Msg("streaming WAL")
	if err := r.sendStatus(ctx, conn, false); err != nil {
		return true, err
	}
	return true, r.receiveLoop(ctx, conn, msgs)
}

// startStreaming checks that the source is our database system, makes
// sure our replication slot exists, and starts replication at the end of
// the last record ingested (rewind).
func (r *WalReceiver) startStreaming(ctx context.Context, conn *pgwire.ReplicationConn) (pgdata.LSN, error) {
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		return 0, err
	}
	if want := strconv.FormatUint(r.ing.SystemID(), 10); sys.SystemID != want {
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

// receive passes the walsender's messages to out (XLogData with its data
// copied), and the error that ends the stream, until ctx ends.
func (r *WalReceiver) receive(ctx context.Context, conn *pgwire.ReplicationConn, out chan<- any, done chan<- struct{}) {
	defer close(done)
	for {
		m, err := conn.Receive(ctx)
		if err != nil {
			select {
			case out <- err:
			case <-ctx.Done():
			}
			return
		}
		if x, ok := m.(*pgwire.XLogData); ok {
			c := *x
			c.Data = bytes.Clone(x.Data)
			m = &c
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// receiveLoop handles the walsender's messages in batches: it writes the
// WAL of every message waiting (up to maxBatch bytes) to the store, syncs
// it, reports the flush, and then ingests the records it completed. It
// also reports at statusInterval, and gives up on a silent walsender.
func (r *WalReceiver) receiveLoop(ctx context.Context, conn *pgwire.ReplicationConn, msgs <-chan any) error {
	ticker := time.NewTicker(r.statusInterval)
	defer ticker.Stop()
	lastMsg := time.Now()
	for {
		var m any
		select {
		case m = <-msgs:
		case <-ticker.C:
			silent := time.Since(lastMsg)
			if silent > r.silenceTimeout {
				return fmt.Errorf("nothing from the WAL source for %v", silent.Round(time.Millisecond))
			}
			if err := r.sendStatus(ctx, conn, silent >= r.statusInterval); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		reply, wrote, streamErr := false, 0, error(nil)
	batch:
		for {
			switch v := m.(type) {
			case error:
				streamErr = v
				break batch
			case *pgwire.XLogData:
				if err := r.write(v); err != nil {
					return err
				}
				wrote += len(v.Data)
			case *pgwire.Keepalive:
				reply = reply || v.ReplyRequested
			}
			lastMsg = time.Now()
			if wrote >= maxBatch {
				break batch
			}
			select {
			case m = <-msgs:
			default:
				break batch
			}
		}
		r.setStatus(func(st *WalReceiverStatus) { st.LastMessage = lastMsg })
		if wrote > 0 || reply {
			if err := r.flushAndIngest(ctx, conn, msgs); err != nil {
				return err
			}
		}
		if streamErr != nil {
			return streamErr
		}
	}
}

// write stores one XLogData message and feeds the bytes the decoder has
// not seen yet to it.
func (r *WalReceiver) write(x *pgwire.XLogData) error {
	if err := r.store.Write(x.Start, x.Data); err != nil {
		if errors.Is(err, ErrWALGap) || errors.Is(err, ErrWALMismatch) {
			return err // the source's WAL, not our disk
		}
		return &storeError{err}
	}
	if fed, end := r.dec.FeedLSN(), x.Start+pgdata.LSN(len(x.Data)); end > fed {
		r.dec.Feed(x.Data[fed-x.Start:])
	}
	return nil
}

// flushAndIngest syncs the store, decodes the records it now completes,
// reports the flush to the source, and ingests them. WAL that does not
// decode ends the stream (a *decodeError) after the records before it.
// The applied position is reported after the ingest only if no message
// waits in msgs: the next batch's report carries it, and every report
// wakes the source's walsender, whose compute shares the CPU with us.
func (r *WalReceiver) flushAndIngest(ctx context.Context, conn *pgwire.ReplicationConn, msgs <-chan any) error {
	if err := r.store.Sync(); err != nil {
		return &storeError{err}
	}
	r.storeWorks()
	// The records before WAL that does not decode are good: ingest them,
	// then end the stream with the decode error.
	decErr := r.decode()
	if err := r.sendStatus(ctx, conn, false); err != nil {
		return err
	}
	if len(r.pending) == 0 {
		return decErr
	}
	if err := r.ingestPending(ctx); err != nil {
		return err
	}
	// The applied position moved: let an idle source know now rather
	// than at the next status interval.
	if len(msgs) == 0 {
		if err := r.sendStatus(ctx, conn, false); err != nil {
			return err
		}
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
	flushed := min(r.store.Flushed(), r.dec.NextRecordLSN())
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
	// Recorded before it is sent: once the source has it, a compute may
	// acknowledge commits up to it, and Acknowledged must say so at once.
	r.setStatus(func(st *WalReceiverStatus) { st.Flushed = flushed })
	return conn.SendStatus(ctx, st)
}
