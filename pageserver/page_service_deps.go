package pageserver

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/walredo"
)

// errIngestPending is what needs WAL ingest (walingest.go, redo.go) says
// until it is part of the page server.
var errIngestPending = errors.New("WAL ingest and redo are not part of this build yet")

// repoRedo is the repository's Redo.
func repoRedo(*walredo.Manager) repo.Redo { return pendingRedo{} }

type pendingRedo struct{}

func (pendingRedo) Apply(context.Context, id.TenantID, key.Key, []byte, []value.Record, pgdata.LSN) ([]byte, error) {
	return nil, errIngestPending
}

// openTimelineWAL starts the WAL side of a timeline.
func openTimelineWAL(context.Context, *repo.Timeline, string, zerolog.Logger) (timelineWAL, error) {
	return nil, errIngestPending
}
