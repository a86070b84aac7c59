package pageserver

import (
	"time"

	"github.com/zenithdb/zenith/repo"
)

// DefaultStallThreshold is stall_threshold's default: far longer than a
// healthy fsync (milliseconds, a second on a busy disk), short enough that
// a person looking at the status learns of a hung disk soon.
const DefaultStallThreshold = 10 * time.Second

// storeStaller is the part of a timeline's WAL side (timelineWAL,
// walreceiver.WalReceiver) that says whether its store's writes stall.
type storeStaller interface {
	StoreStalled(now time.Time, threshold time.Duration) (op string, since time.Time)
}

// timelineStall returns what of timeline tl (whose WAL side is w; nil for
// none) has been writing for longer than threshold at now: the step of
// its layer flush or its WAL store's write or fsync, whichever began
// first, and since when; "" if neither. A disk that does not answer
// leaves the write waiting in the kernel with no error to report; this is
// how it shows. Other timelines go on meanwhile (docs/resource-limits.md,
// "A slow disk").
func timelineStall(tl *repo.Timeline, w storeStaller, now time.Time, threshold time.Duration) (op string, since time.Time) {
	op, since = tl.FlushStalled(now, threshold)
	if w == nil {
		return op, since
	}
	if wop, wsince := w.StoreStalled(now, threshold); wop != "" && (op == "" || wsince.Before(since)) {
		op, since = wop, wsince
	}
	return op, since
}
