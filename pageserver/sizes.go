package pageserver

import (
	"context"
	"io/fs"
	"path/filepath"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// timelineSizes is what a timeline costs: the logical size of its
// databases as of its last record, and the bytes on disk that only it
// holds (its own layer files and raw WAL, what deleting it frees; the
// ancestor's layers it reads through are the ancestor's).
type timelineSizes struct {
	// Logical is -1 when it could not be computed (e.g. a timeline
	// without pg_control yet).
	Logical int64
	Layers  int64
	WAL     int64
}

// logicalSize is a timeline's logical size as of an LSN, cached so that
// listing branches does not read every relation size again while the
// branch does not move.
type logicalSize struct {
	lsn  pgdata.LSN
	size int64
}

// sizes returns tl's sizes. The logical size is computed at most once per
// last record LSN.
func (t *tenant) sizes(ctx context.Context, tl *repo.Timeline) timelineSizes {
	_, bytes := layerFiles(filepath.Join(t.dir, "timelines", tl.ID().String()))
	sz := timelineSizes{Layers: bytes["delta"] + bytes["image"], WAL: dirBytes(t.walDir(tl.ID()))}
	lsn := tl.LastRecordLSN()
	t.mu.Lock()
	cached, ok := t.logical[tl.ID()]
	t.mu.Unlock()
	if ok && cached.lsn == lsn {
		sz.Logical = cached.size
		return sz
	}
	n, err := logicalSizeAt(ctx, tl, lsn)
	if err != nil {
		t.log.Warn().Err(err).Str("timeline", tl.ID().String()).Stringer("lsn", lsn).Msg("cannot compute the logical size")
		sz.Logical = -1
		return sz
	}
	t.mu.Lock()
	t.logical[tl.ID()] = logicalSize{lsn, n}
	t.mu.Unlock()
	sz.Logical = n
	return sz
}

// logicalSizeAt sums the sizes of every database's relations at lsn: what
// pg_database_size reports for each, added up (the shared catalogs
// included).
func logicalSizeAt(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN) (int64, error) {
	r := datadir.NewDatadirReader(tl, lsn)
	dbs, err := r.Databases(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, db := range dbs {
		n, err := r.DBSize(ctx, db)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// dirBytes is the total size of the regular files under dir (0 if it does
// not exist).
func dirBytes(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		return nil
	})
	return total
}

// forgetSize drops a deleted timeline's cached size.
func (t *tenant) forgetSize(tid id.TimelineID) {
	t.mu.Lock()
	delete(t.logical, tid)
	t.mu.Unlock()
}
