package walingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// truncateRelation follows smgr_redo for XLOG_SMGR_TRUNCATE: the relation
// is created if missing, the main fork cut to t.Blocks, and the free-space
// map and visibility map cut to what covers those blocks
// (FreeSpaceMapPrepareTruncateRel, visibilitymap_prepare_truncate). A fork
// never grows by truncation.
func (w *WalIngest) truncateRelation(ctx context.Context, t *pgdata.SmgrTruncate) error {
	if err := w.w.CreateRelation(ctx, t.Rel, pgdata.ForkMain); err != nil {
		return err
	}
	if t.Flags&pgdata.SmgrTruncateHeap != 0 {
		size, err := w.w.RelSize(ctx, t.Rel, pgdata.ForkMain)
		if err != nil {
			return err
		}
		if t.Blocks < size {
			if err := w.w.SetRelSize(ctx, t.Rel, pgdata.ForkMain, t.Blocks); err != nil {
				return err
			}
		}
	}
	if t.Flags&pgdata.SmgrTruncateFSM != 0 {
		err := w.truncateMap(ctx, t.Rel, pgdata.ForkFSM, func(size uint32) (uint32, bool, bool) {
			return pgdata.FSMTruncation(t.Blocks, size)
		}, func(blk uint32) value.Value {
			// The last page keeps slots for heap blocks that were cut
			// off, which PostgreSQL zeroes (fsm_truncate_avail) without
			// WAL. The map is only a hint, rebuilt by searches and
			// VACUUM: a zero page (free space unknown) is as good for
			// the blocks it still covers.
			return value.Image(zeroBlock)
		})
		if err != nil {
			return err
		}
	}
	if t.Flags&pgdata.SmgrTruncateVM != 0 {
		err := w.truncateMap(ctx, t.Rel, pgdata.ForkVM, func(size uint32) (uint32, bool, bool) {
			return pgdata.VMTruncation(t.Blocks, size)
		}, func(uint32) value.Value {
			return value.OpValue(value.VMTruncate{HeapBlocks: t.Blocks}, false)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// truncateMap cuts a map fork, if it exists, to what plan says, and
// stores lastPage for its new last page when plan says that page is cut
// through.
func (w *WalIngest) truncateMap(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber,
	plan func(size uint32) (newSize uint32, partial, ok bool), lastPage func(blk uint32) value.Value) error {
	exists, err := w.w.RelationExists(ctx, rel, fork)
	if err != nil || !exists {
		return err
	}
	size, err := w.w.RelSize(ctx, rel, fork)
	if err != nil {
		return err
	}
	newSize, partial, ok := plan(size)
	if partial {
		if err := w.put(key.RelBlock(rel, fork, newSize-1), lastPage(newSize-1)); err != nil {
			return err
		}
	}
	if ok {
		return w.w.SetRelSize(ctx, rel, fork, newSize)
	}
	return nil
}

// createDatabase follows dbase_redo for CREATE DATABASE, in any
// tablespace. With WAL_LOG the record makes the directory and its
// PG_VERSION (CreateDirAndVersionFile); the relations, their blocks and
// the relation map come in their own records. With FILE_COPY the
// directory is a copy of the source database's directory in the source
// tablespace (copydir): every relation (each block as it is at this
// record, the sizes), and the relation map and PG_VERSION if it has them.
// CREATE DATABASE writes one such record per tablespace the template has
// a directory in, and ALTER DATABASE SET TABLESPACE one for the move
// (movedb), followed by the drop of the old directory.
func (w *WalIngest) createDatabase(ctx context.Context, c *pgdata.DBaseCreate) error {
	db := datadir.Database{SpcNode: c.TsID, DbNode: c.DbID}
	if err := w.w.CreateDatabase(ctx, db); err != nil {
		return err
	}
	if !c.FileCopy {
		return w.w.PutAuxFile(ctx, datadir.DatabaseVersionPath(db), datadir.PGVersionFile)
	}
	src := datadir.Database{SpcNode: c.SrcTsID, DbNode: c.SrcDbID}
	hasVersion, err := w.w.AuxFileListed(ctx, datadir.DatabaseVersionPath(src))
	if err != nil {
		return err
	}
	if hasVersion {
		if err := w.w.PutAuxFile(ctx, datadir.DatabaseVersionPath(db), datadir.PGVersionFile); err != nil {
			return err
		}
	}
	rels, err := w.w.Relations(ctx, src)
	if err != nil {
		return err
	}
	lsn := w.tl.LastRecordLSN()
	for _, e := range rels {
		for fork := range pgdata.MaxFork + 1 {
			if !e.Forks.Has(fork) {
				continue
			}
			from := pgdata.RelFileNode{SpcNode: src.SpcNode, DbNode: src.DbNode, RelNode: e.RelNode}
			to := pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: e.RelNode}
			n, err := w.w.RelSize(ctx, from, fork)
			if err != nil {
				return err
			}
			for blk := range n {
				page, err := w.tl.Get(ctx, key.RelBlock(from, fork, blk), lsn)
				if errors.Is(err, repo.ErrKeyNotFound) {
					page = zeroBlock
				} else if err != nil {
					return fmt.Errorf("copy %v fork %v block %d to database %d: %w", from, fork, blk, c.DbID, err)
				}
				if err := w.put(key.RelBlock(to, fork, blk), value.Image(page)); err != nil {
					return err
				}
			}
			if err := w.w.SetRelSize(ctx, to, fork, n); err != nil {
				return err
			}
		}
	}
	relMap, err := w.tl.Get(ctx, key.RelMap(src.SpcNode, src.DbNode), lsn)
	switch {
	case errors.Is(err, repo.ErrKeyNotFound):
		// Not the source's default tablespace: no map to copy.
		return nil
	case err != nil:
		return fmt.Errorf("copy the relation map of database %d: %w", c.SrcDbID, err)
	}
	return w.w.PutRelMap(db, relMap)
}

// dropDatabase follows dbase_redo for DROP DATABASE: the database's
// directory goes from every tablespace the record names (dropdb names
// each one it has a directory in; movedb names the one it moved from).
func (w *WalIngest) dropDatabase(ctx context.Context, drop *pgdata.DBaseDrop) error {
	for _, ts := range drop.TsIDs {
		db := datadir.Database{SpcNode: ts, DbNode: drop.DbID}
		if err := w.w.DropDatabase(ctx, db); err != nil {
			return err
		}
		if err := w.w.RemoveAuxFile(ctx, datadir.DatabaseVersionPath(db)); err != nil {
			return err
		}
	}
	return nil
}

// putRelMap stores a relation map (relmap_redo). The shared map's record
// names database 0 in pg_global, which is how the model names global/.
func (w *WalIngest) putRelMap(ctx context.Context, u *pgdata.RelMapUpdate) error {
	db := datadir.Database{SpcNode: u.TsID, DbNode: u.DbID}
	if u.DbID != 0 {
		// A relation map is written when the database is created
		// (RelationMapCopy) or a mapped catalog rewritten: it exists.
		if err := w.w.CreateDatabase(ctx, db); err != nil {
			return err
		}
	}
	return w.w.PutRelMap(db, bytes.Clone(u.File))
}
