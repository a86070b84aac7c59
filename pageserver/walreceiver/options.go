package walreceiver

import (
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/vfs"
)

// SetClient sets what the receiver presents to the safekeepers (token,
// CA). It is set before the receiver runs.
func (r *WalReceiver) SetClient(client auth.ClientOptions) { r.client = client }

// SetDiskState sets what learns whether the WAL store's writes find the
// disk full. It is set before the receiver runs.
func (r *WalReceiver) SetDiskState(disk *vfs.DiskState) { r.disk = disk }

// The timing the page server's tests of the receiver wait on.
const (
	// MinBackoff is the first wait before reconnecting; each failure
	// doubles it.
	MinBackoff = minBackoff
	// SwitchIdle is how long no WAL may come from the current
	// safekeeper before the receiver looks for one that is ahead.
	SwitchIdle = switchIdle
)

// SetIntervals shortens how often a standby status update is sent and how
// long a silent connection is kept (tests; the defaults are the constants
// statusInterval and silenceTimeout). It is set before the receiver runs.
func (r *WalReceiver) SetIntervals(status, silence time.Duration) {
	r.statusInterval, r.silenceTimeout = status, silence
}

// ConnString is the replication connection string for the safekeeper at
// addr (host:port), as the receiver of generation gen dials it.
func (s *SafekeeperSet) ConnString(addr string, timeline id.TimelineID, gen repo.Generation, client auth.ClientOptions) string {
	return s.connString(addr, timeline, gen, client)
}
