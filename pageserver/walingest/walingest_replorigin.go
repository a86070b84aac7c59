package walingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// trackReplOrigins keeps the replication origins' progress as PostgreSQL's
// replay does (replorigin_redo; xact_redo_commit, xact_redo_abort and
// PrepareRedoAdd for a record of a session with an origin), in the
// auxiliary file pg_logical/replorigin_checkpoint, which a basebackup
// writes and a starting compute reads (StartupReplicationOrigin). Without
// it a logical-replication subscriber re-created from the page server
// would ask its publisher for changes it has already applied.
func (w *WalIngest) trackReplOrigins(ctx context.Context, d *decoded) error {
	var change func(pgdata.ReplOrigins)
	switch {
	case d.originSet != nil:
		change = func(o pgdata.ReplOrigins) { o.Advance(d.originSet.Origin, d.originSet.RemoteLSN, d.originSet.Force) }
	case d.originDrop != nil:
		change = func(o pgdata.ReplOrigins) { delete(o, *d.originDrop) }
	case d.xactEnd != nil && d.xactEnd.Xinfo&pgdata.XactXinfoHasOrigin != 0:
		change = func(o pgdata.ReplOrigins) { o.Advance(d.rec.Origin, d.xactEnd.OriginLSN, false) }
	case d.prepare != nil && d.rec.Origin != pgdata.InvalidReplOrigin:
		change = func(o pgdata.ReplOrigins) { o.Advance(d.rec.Origin, d.prepare.OriginLSN, false) }
	default:
		return nil
	}
	origins, err := w.replOrigins(ctx)
	if err != nil {
		return err
	}
	change(origins)
	return w.w.PutAuxFile(ctx, pgdata.ReplOriginCheckpointPath, origins.Encode())
}

// replOrigins reads the stored replication origins' progress as of the
// last record; none if the file was never written.
func (w *WalIngest) replOrigins(ctx context.Context) (pgdata.ReplOrigins, error) {
	b, err := w.tl.Get(ctx, key.AuxFile(pgdata.ReplOriginCheckpointPath), w.tl.LastRecordLSN())
	if errors.Is(err, repo.ErrKeyNotFound) {
		return pgdata.ReplOrigins{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", pgdata.ReplOriginCheckpointPath, err)
	}
	path, contents, err := datadir.DecodeAuxFile(b)
	if err == nil && path != pgdata.ReplOriginCheckpointPath {
		err = fmt.Errorf("key holds %s (hash collision)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", pgdata.ReplOriginCheckpointPath, err)
	}
	origins, err := pgdata.ParseReplOriginCheckpoint(contents)
	if err != nil {
		return nil, fmt.Errorf("stored %s: %w", pgdata.ReplOriginCheckpointPath, err)
	}
	return origins, nil
}
