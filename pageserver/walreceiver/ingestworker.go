package walreceiver

import (
	"context"
	"sync"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// maxQueued is how many bytes of decoded WAL may wait for the ingest
// worker before the receive loop waits for it: the memory an ingest that
// lags behind the stream may hold.
const maxQueued = 2 * maxBatch

// ingestWorker ingests, on its own goroutine, the records the receive loop
// decoded from fsynced WAL, in order. The loop queues them and reports
// the flush at once, so the next fsync and the reply that a compute's
// commit waits for never wait for the ingest of the records before. The
// records are durable in the WALStore before they are queued: a crash
// loses the queue, never WAL, and the next start ingests the stored WAL
// above the repository's disk-consistent LSN (catchUp).
//
// Every record queued is ingested before finish returns, unless the ctx
// given to startIngest ends first (the receiver stops): a new connection
// cuts the stored WAL back to the end of the last record ingested
// (rewind), so it must not start while records wait.
type ingestWorker struct {
	r *WalReceiver

	mu     sync.Mutex
	queue  []*pgdata.Record
	queued int  // bytes of WAL the records in queue span
	closed bool // finish was called: no more records come

	wake    chan struct{} // records queued, or closed
	room    chan struct{} // queued fell
	applied chan struct{} // records were ingested: the applied position moved
	done    chan struct{} // closed when the worker has returned
}

// startIngest starts the ingest worker. The ingest of a record is cut
// short only when ctx ends: it should be the receiver's Run context, not a
// connection's.
func (r *WalReceiver) startIngest(ctx context.Context) *ingestWorker {
	w := &ingestWorker{
		r:       r,
		wake:    make(chan struct{}, 1),
		room:    make(chan struct{}, 1),
		applied: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go w.run(ctx)
	return w
}

// add queues recs for ingest. While more than maxQueued bytes wait, it
// first waits for the worker, until ctx (the connection's) ends: records
// that are decoded must be ingested, so then they are queued anyway.
func (w *ingestWorker) add(ctx context.Context, recs []*pgdata.Record) {
	if len(recs) == 0 {
		return
	}
	n := int(recs[len(recs)-1].EndLSN - recs[0].LSN)
	for {
		w.mu.Lock()
		if w.queued < maxQueued || ctx.Err() != nil {
			w.queue = append(w.queue, recs...)
			w.queued += n
			w.mu.Unlock()
			signal(w.wake)
			return
		}
		w.mu.Unlock()
		select {
		case <-w.room:
		case <-w.done:
			// The worker stopped (its ctx ended): nothing is ingested
			// any more.
			return
		case <-ctx.Done():
		}
	}
}

// finish waits until every record queued is ingested, or the worker's ctx
// ends.
func (w *ingestWorker) finish() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	signal(w.wake)
	<-w.done
}

// run ingests what is queued, batch after batch, until finish and the
// queue is empty, or ctx ends.
func (w *ingestWorker) run(ctx context.Context) {
	defer close(w.done)
	for {
		w.mu.Lock()
		recs, n, closed := w.queue, w.queued, w.closed
		w.queue, w.queued = nil, 0
		w.mu.Unlock()
		if len(recs) == 0 {
			if closed {
				return
			}
			select {
			case <-w.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		signal(w.room)
		if err := w.r.ingest(ctx, recs); err != nil {
			return
		}
		if n > 0 {
			signal(w.applied)
		}
	}
}

// signal wakes the receiver of c, a channel of capacity 1, unless a
// wake-up already waits there.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
