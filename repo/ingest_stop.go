package repo

import (
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// ErrIngestStopped is what IngestStoppedError wraps: a read or a wait for
// an LSN after the point where the timeline's ingest stopped, which will
// not be reached until the cause is fixed and the page server restarted.
var ErrIngestStopped = errors.New("ingest stopped")

// IngestStoppedError says that a timeline's WAL ingest stopped at LSN (the
// end of the last record ingested) for Reason. The WAL after LSN is kept
// (it was received and made durable), but nothing after LSN can be read
// until ingest resumes.
type IngestStoppedError struct {
	Timeline string
	LSN      pgdata.LSN
	Reason   string
}

func (e *IngestStoppedError) Error() string {
	return fmt.Sprintf("ingest of timeline %s stopped at LSN %v: %s", e.Timeline, e.LSN, e.Reason)
}

// Unwrap makes errors.Is(err, ErrIngestStopped) hold.
func (e *IngestStoppedError) Unwrap() error { return ErrIngestStopped }

// StopIngest records that ingest of the timeline stopped at its last
// record LSN for reason, and wakes every WaitForLSN, which from now on
// fails at once for an LSN after that point. It is not persisted: a
// reopened timeline ingests again. A second call keeps the first reason.
func (tl *Timeline) StopIngest(reason string) *IngestStoppedError {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.ingestStopped == nil {
		tl.ingestStopped = &IngestStoppedError{Timeline: tl.id.String(), LSN: tl.last, Reason: reason}
		close(tl.lsnAdvanced)
		tl.lsnAdvanced = make(chan struct{})
	}
	return tl.ingestStopped
}

// IngestStopped returns why and where the timeline's ingest stopped, nil
// while it goes on.
func (tl *Timeline) IngestStopped() *IngestStoppedError {
	tl.mu.RLock()
	defer tl.mu.RUnlock()
	return tl.ingestStopped
}
