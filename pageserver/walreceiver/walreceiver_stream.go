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
	msgs := make(chan any, 64)
	received := make(chan struct{})
	var ing *ingestWorker
	defer func() {
		cancel()
		<-received
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
		close(received)
		return false, err
	}
	go r.receive(ctx, conn, msgs, received)
	ing = r.startIngest(runCtx)
	r.setStatus(func(st *WalReceiverStatus) { st.Connected, st.LastError = true, "" })
	r.log.Info().Stringer("start", start).Msg("streaming WAL")
	if err := r.sendStatus(ctx, conn, false); err != nil {
		return true, err
	}
	return true, r.receiveLoop(ctx, conn, msgs, ing)
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
// it, hands the records it completed to ing and reports the flush. It
// also reports at statusInterval and when ing has ingested records while
// no message waits, and gives up on a silent walsender.
func (r *WalReceiver) receiveLoop(ctx context.Context, conn *pgwire.ReplicationConn, msgs <-chan any, ing *ingestWorker) error {
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
		case <-ing.applied:
			// The applied position moved: let an idle source know now
			// rather than at the next status interval. Under load the
			// next flush report carries it: every report wakes the
			// source's walsender, whose compute shares the CPU with us.
			if len(msgs) == 0 {
				if err := r.sendStatus(ctx, conn, false); err != nil {
					return err
				}
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
			if err := r.flush(ctx, conn, ing); err != nil {
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
