package walreceiver

import (
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// The stored WAL as the page server's walsender serves it to read
// replicas (stock PostgreSQL standbys; the page service runs the
// replication commands). What may be sent is what the receiver reports
// flushed to its source before any safekeeper rule: the end of the last
// complete record in the fsynced store (SendableLSN), never beyond it,
// so a replica never replays WAL the page server could still lose or
// that no compute acknowledged. The only WAL the store cuts is after the
// last record ingested (rewind), which is never below that end but
// after a failure of its own (stored WAL that no longer decodes); such a
// cut below what a stream sent ends the stream (pgwire.ErrWALTruncated),
// and the replica asks again.

// WALRemovedError is the error of a walsender asked for WAL that the
// store no longer holds (WALStore.TrimBelow removed it), in PostgreSQL's
// words.
type WALRemovedError struct {
	// Segment is the name of the WAL segment file asked for.
	Segment string
	// Begin is where the stored WAL begins now.
	Begin pgdata.LSN
}

func (e *WALRemovedError) Error() string {
	return fmt.Sprintf("requested WAL segment %s has already been removed (the page server's WAL of this timeline begins at %s)", e.Segment, e.Begin)
}

// ErrNotSending ends the streams of a timeline whose WAL the page server
// stopped serving (StopSending): it was deleted or detached.
var ErrNotSending = errors.New("the page server no longer serves this timeline's WAL (deleted or detached)")

// StopSending ends every stream of the stored WAL (ErrNotSending), and
// refuses new ones: the store is about to close.
func (r *WalReceiver) StopSending() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sendStopped {
		return
	}
	r.sendStopped = true
	close(r.sendChanged)
	r.sendChanged = make(chan struct{})
}

// SendableLSN is the end of the stored WAL a walsender may send.
func (r *WalReceiver) SendableLSN() pgdata.LSN {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sendable
}

// SystemID is the timeline's database system identifier, which a
// replica's IDENTIFY_SYSTEM compares with its own.
func (r *WalReceiver) SystemID() uint64 { return r.ing.SystemID() }

// SegmentSize is the WAL segment size of the timeline.
func (r *WalReceiver) SegmentSize() uint64 { return r.store.SegmentSize() }

// setSendable advances SendableLSN to lsn (it never goes back but by
// cutSendable) and wakes the walsenders.
func (r *WalReceiver) setSendable(lsn pgdata.LSN) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lsn <= r.sendable {
		return
	}
	r.sendable = lsn
	close(r.sendChanged)
	r.sendChanged = make(chan struct{})
}

// cutSendable is called before the stored WAL is cut at lsn: a cut below
// SendableLSN is counted, so that a walsender that sent WAL after it
// ends its stream, and one reading at that moment reads again.
func (r *WalReceiver) cutSendable(lsn pgdata.LSN) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lsn >= r.sendable {
		return
	}
	r.sendable = lsn
	r.cuts.Count++
	r.cuts.Last = lsn
	close(r.sendChanged)
	r.sendChanged = make(chan struct{})
}

// Sender returns the stored WAL as one walsender stream sends it from
// start: a *WALRemovedError if the store no longer holds
// start (a start in the store's first segment, below its beginning, is
// moved there: a stock standby asks from the start of a segment, and
// keeps what its own copy of the segment holds below), or a *pgwire.Error
// if start is after SendableLSN. It returns where the stream starts.
func (r *WalReceiver) Sender(start pgdata.LSN) (pgwire.WALSource, pgdata.LSN, error) {
	r.mu.Lock()
	end, seen, stopped := r.sendable, r.cuts.Count, r.sendStopped
	r.mu.Unlock()
	if stopped {
		return nil, 0, ErrNotSending
	}
	begin, seg := r.store.Start(), r.store.SegmentSize()
	if start < begin && start.SegmentNo(seg) == begin.SegmentNo(seg) {
		start = begin
	}
	if start < begin {
		return nil, 0, &WALRemovedError{Segment: r.store.segs.Name(start.SegmentNo(seg)), Begin: begin}
	}
	if start > end {
		return nil, 0, pgwire.Errorf(pgwire.CodeObjectNotInPrereqState,
			"requested starting point %s is ahead of the WAL flush position of the page server %s", start, end)
	}
	return &StoredWAL{r: r, seen: seen}, start, nil
}

// StoredWAL is the stored WAL as one walsender stream sends it
// (pgwire.WALSource).
type StoredWAL struct {
	r *WalReceiver
	// seen is the count of cuts (WalReceiver.cuts) the stream has
	// checked what it sent against.
	seen uint64
}

var _ pgwire.WALSource = (*StoredWAL)(nil)

// Servable returns SendableLSN and the channel closed when it changes;
// an error wrapping pgwire.ErrWALTruncated if the stored WAL was cut
// below sent, ErrNotSending after StopSending.
func (w *StoredWAL) Servable(sent pgdata.LSN) (pgdata.LSN, <-chan struct{}, error) {
	w.r.mu.Lock()
	end, cuts, changed, stopped := w.r.sendable, w.r.cuts, w.r.sendChanged, w.r.sendStopped
	w.r.mu.Unlock()
	if stopped {
		return 0, nil, ErrNotSending
	}
	seen, err := cuts.Check(sent, w.seen)
	if err != nil {
		return 0, nil, err
	}
	w.seen = seen
	return end, changed, nil
}

// ReadWAL reads stored WAL below an end Servable returned; false if the
// store was cut since (the bytes read may be of either side of the cut).
func (w *StoredWAL) ReadWAL(b []byte, lsn pgdata.LSN) (bool, error) {
	if err := w.r.store.readAt(b, lsn); err != nil {
		if begin := w.r.store.Start(); begin > lsn {
			return false, &WALRemovedError{Segment: w.r.store.segs.Name(lsn.SegmentNo(w.r.store.SegmentSize())), Begin: begin}
		}
		return false, err
	}
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.cuts.Count == w.seen, nil
}
