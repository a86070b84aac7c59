package basebackup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// backup writes the files of one basebackup.
type backup struct {
	r          *datadir.DatadirReader
	t          *tarball
	relSegSize uint32 // blocks per relation segment file (RELSEG_SIZE)
	// lazy, when set, collects the logged relation files instead of
	// writing their contents (Options.Lazy).
	lazy *api.LazyManifest
	// checksums: the cluster has data checksums, so each relation page
	// written gets its checksum set (a page rebuilt by redo has a stale
	// one, and the compute checks it on every read).
	checksums bool
	// timings gets the time of the size lookups.
	timings *Timings
}

// auxFiles writes the auxiliary files outside the database directories
// (PG_VERSION, the configuration files). Those under base/, global/ and
// pg_tblspc/ are left out: databases writes each listed database's
// PG_VERSION, so a dropped database leaves no directory.
func (b *backup) auxFiles(ctx context.Context) error {
	paths, err := b.r.AuxFiles(ctx)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if strings.HasPrefix(p, "base/") || strings.HasPrefix(p, "global/") || strings.HasPrefix(p, "pg_tblspc/") {
			continue
		}
		contents, err := b.r.AuxFile(ctx, p)
		if err != nil {
			return err
		}
		if err := b.t.bytes(p, contents); err != nil {
			return err
		}
	}
	return nil
}

// databases writes every database's directory: PG_VERSION where the
// model lists one (a database's default tablespace has it, CREATE
// DATABASE writes it; a directory that only holds relations placed in
// another tablespace does not, and DROP TABLESPACE and ALTER DATABASE SET
// TABLESPACE depend on that), the relmapper file and every relation fork.
func (b *backup) databases(ctx context.Context) error {
	dbs, err := b.r.Databases(ctx)
	if err != nil {
		return err
	}
	aux, err := b.r.AuxFiles(ctx)
	if err != nil {
		return err
	}
	for _, db := range dbs {
		dir := datadir.DatabaseDir(db)
		if err := b.t.dir(dir); err != nil {
			return err
		}
		if _, found := slices.BinarySearch(aux, datadir.DatabaseVersionPath(db)); found {
			if err := b.t.bytes(dir+"/PG_VERSION", datadir.PGVersionFile); err != nil {
				return err
			}
		}
		relmap, found, err := b.r.RelMap(ctx, db)
		if err != nil {
			return err
		}
		// A database without one is being created at the LSN (not yet
		// committed, so no backend can connect to it), or this is not
		// its default tablespace.
		if found {
			if err := b.t.bytes(dir+"/pg_filenode.map", relmap); err != nil {
				return err
			}
		}
		rels, err := b.r.Relations(ctx, db)
		if err != nil {
			return err
		}
		for _, e := range rels {
			if err := b.relation(ctx, pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: e.RelNode}, e.Forks); err != nil {
				return err
			}
		}
	}
	return nil
}

// relation writes the files of every fork of one relation. An unlogged
// relation (one with an init fork) gets its init fork and, as its main
// fork, a copy of it (ResetUnloggedRelations after a crash).
func (b *backup) relation(ctx context.Context, rel pgdata.RelFileNode, forks datadir.ForkSet) error {
	if forks.Has(pgdata.ForkInit) {
		for _, f := range []pgdata.ForkNumber{pgdata.ForkInit, pgdata.ForkMain} {
			if err := b.fork(ctx, rel, pgdata.ForkInit, f); err != nil {
				return err
			}
		}
		return nil
	}
	for f := range pgdata.MaxFork + 1 {
		if forks.Has(f) {
			if err := b.fork(ctx, rel, f, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// fork writes the contents of fork from as the files of fork as: segment
// files of relSegSize blocks named as md.c names them, one empty file for
// an empty fork.
func (b *backup) fork(ctx context.Context, rel pgdata.RelFileNode, from, as pgdata.ForkNumber) error {
	start := time.Now()
	n, err := b.r.RelSize(ctx, rel, from)
	b.timings.Sizes += time.Since(start)
	b.timings.Forks++
	if err != nil {
		return err
	}
	for seg := uint32(0); seg == 0 || seg*b.relSegSize < n; seg++ {
		start := seg * b.relSegSize
		end := min(n, start+b.relSegSize)
		if b.lazy != nil && from == as && from != pgdata.ForkInit {
			b.lazy.Add(rel, as, seg, int64(end-start)*pgdata.BlockSize)
			continue
		}
		err := b.pagesFile(ctx, pgdata.RelationPath(rel, as, seg), start, end, func(blk uint32) ([]byte, error) {
			page, err := b.r.RelPage(ctx, rel, from, blk)
			if err != nil || !b.checksums {
				return page, err
			}
			page = bytes.Clone(page) // RelPage's page is not ours to change
			pgdata.SetPageChecksum(page, blk)
			return page, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// pagesFile writes the file p of the stored pages start to end (not
// included), each read with page, which must return a whole page.
func (b *backup) pagesFile(ctx context.Context, p string, start, end uint32, page func(blk uint32) ([]byte, error)) error {
	return b.t.file(p, int64(end-start)*pgdata.BlockSize, func(w io.Writer) error {
		for blk := start; blk < end; blk++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			pg, err := page(blk)
			if err != nil {
				return err
			}
			if len(pg) != pgdata.BlockSize {
				return fmt.Errorf("block %d of %s: stored page has %d bytes, want %d", blk, p, len(pg), pgdata.BlockSize)
			}
			if _, err := w.Write(pg); err != nil {
				return err
			}
		}
		return nil
	})
}

// basebackupSLRUs are the SLRUs a basebackup writes; the others
// (pg_subtrans, pg_commit_ts, pg_notify, pg_serial) start empty.
var basebackupSLRUs = []key.SLRU{key.Clog, key.MultiXactOffsets, key.MultiXactMembers}

// slrus writes every segment of the stored SLRUs.
func (b *backup) slrus(ctx context.Context) error {
	for _, s := range basebackupSLRUs {
		segs, err := b.r.SLRUSegments(ctx, s)
		if err != nil {
			return err
		}
		for _, seg := range segs {
			n, err := b.r.SLRUSegmentSize(ctx, s, seg)
			if err != nil {
				return err
			}
			// SlruFileName's "%04X".
			p := path.Join(s.String(), fmt.Sprintf("%04X", seg))
			err = b.pagesFile(ctx, p, 0, n, func(blk uint32) ([]byte, error) {
				return b.r.SLRUPage(ctx, s, seg, blk)
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// twoPhase writes the prepared transactions' state files.
func (b *backup) twoPhase(ctx context.Context) error {
	xids, err := b.r.TwoPhaseFiles(ctx)
	if err != nil {
		return err
	}
	for _, xid := range xids {
		f, err := b.r.TwoPhaseFile(ctx, xid)
		if err != nil {
			return err
		}
		// TwoPhaseFilePath's "%08X".
		if err := b.t.bytes(fmt.Sprintf("pg_twophase/%08X", xid), f); err != nil {
			return err
		}
	}
	return nil
}
