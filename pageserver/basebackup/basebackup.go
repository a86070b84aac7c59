package basebackup

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Options tunes Basebackup.
type Options struct {
	// Prev is the start of the record that ends at the basebackup's LSN:
	// the synthetic checkpoint record's xl_prev. 0 means unknown: then
	// the timeline's PrevRecordLSN if the LSN is its last record LSN,
	// otherwise 0, which PostgreSQL accepts because it reads the
	// checkpoint record by random access and only checks xl_prev < its
	// position (ValidXLogRecordHeader).
	Prev pgdata.LSN
	// Lazy leaves the contents of logged relations out: their files are
	// listed, with their sizes, in the file api.LazyManifestName at the
	// top of the tar, for a compute that fetches their blocks on demand.
	// Unlogged relations (an init fork and its copy) are still written.
	Lazy bool
	// Progress, if set, is called with the bytes written so far after
	// every file and at the end.
	Progress func(bytes int64)
	// Timings, if set, receives how long each part of the basebackup
	// took, for the caller's log.
	Timings *Timings
}

// Timings splits a basebackup's time into its parts. Tar writing is in
// each part's time (the stream is written as the files are read), and
// Sizes is within Databases.
type Timings struct {
	// Start: pg_control, the checkpoint, and the WAL segment built.
	Start time.Duration
	// Files: directories, tablespaces and auxiliary files.
	Files time.Duration
	// Databases: every database's directory, relmapper file and
	// relation files (or, lazy, their sizes).
	Databases time.Duration
	// Sizes: the relation forks' size lookups, of Databases.
	Sizes time.Duration
	// Forks is how many relation forks' sizes were read.
	Forks int
	// SLRUs: the SLRU segments and two-phase state files.
	SLRUs time.Duration
	// End: the lazy manifest, the WAL segment, pg_control, the tar's end.
	End time.Duration
}

// The directories of a data directory that hold nothing a basebackup
// ships but that PostgreSQL needs to exist (initdb's subdirs[]); the
// directories that hold files are written with their files.
var basebackupDirs = []string{
	"global", "base", "pg_wal/archive_status", "pg_commit_ts", "pg_dynshmem",
	"pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans", "pg_twophase",
	"pg_multixact/members", "pg_multixact/offsets", "pg_replslot", "pg_tblspc",
	"pg_stat", "pg_stat_tmp", "pg_xact", "pg_logical/snapshots",
	"pg_logical/mappings",
}

// Basebackup writes to w a tar of tl's data directory as of lsn, which
// stock PostgreSQL 15 starts on without replaying any WAL (DESIGN section
// 7): every file the data-directory model holds, every relation file
// (eager mode), a WAL segment holding a shutdown checkpoint record at lsn
// with the counters ingest kept (next XID, OID, multixact...), and a
// pg_control that points at that record with state "shut down".
//
// lsn must be the end of a record (a record boundary; an unaligned lsn is
// rounded up to 8 bytes, where the next record would start), at most the
// timeline's last record LSN (the caller waits for it) and at least its
// GC cut-off. Errors wrap repo.ErrLSNNotReached, repo.ErrBelowGCCutoff or
// ErrNoControlFile (nothing was imported) for those cases.
//
// Unlogged relations are written as PostgreSQL leaves them after a crash
// (ResetUnloggedRelations): the main fork a copy of the init fork, no
// other forks. Their contents are never in the WAL, so a compute started
// from the page server cannot have them.
func Basebackup(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN, w io.Writer, opts Options) error {
	if err := basebackup(ctx, tl, lsn, w, opts); err != nil {
		return fmt.Errorf("basebackup of timeline %s at %v: %w", tl.ID(), lsn, err)
	}
	return nil
}

func basebackup(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN, w io.Writer, opts Options) error {
	last := tl.LastRecordLSN()
	if lsn > last {
		return fmt.Errorf("the timeline's last record ends at %v: %w", last, repo.ErrLSNNotReached)
	}
	if cut := tl.GCCutoff(); lsn < cut {
		return fmt.Errorf("the timeline's GC cut-off is %v: %w", cut, repo.ErrBelowGCCutoff)
	}
	prev := opts.Prev
	if prev == 0 && lsn == last {
		prev = tl.PrevRecordLSN()
	}
	tm := opts.Timings
	if tm == nil {
		tm = &Timings{}
	}
	lap := time.Now()
	took := func(d *time.Duration) {
		now := time.Now()
		*d += now.Sub(lap)
		lap = now
	}
	r := datadir.NewDatadirReader(tl, lsn)
	cf, wal, err := startFiles(ctx, r, prev)
	if err != nil {
		return err
	}
	took(&tm.Start)
	b := &backup{r: r, t: newTarball(w, time.Unix(cf.Time, 0), opts.Progress), relSegSize: cf.RelSegSize,
		checksums: cf.DataChecksumVersion != 0, timings: tm}
	if opts.Lazy {
		b.lazy = &api.LazyManifest{LSN: lsn, RelSegSize: cf.RelSegSize}
	}
	for _, d := range basebackupDirs {
		if err := b.t.dir(d); err != nil {
			return err
		}
	}
	listed, err := b.tablespaces(ctx)
	if err != nil {
		return err
	}
	if err := b.checkTablespaces(ctx, listed); err != nil {
		return err
	}
	if err := b.auxFiles(ctx); err != nil {
		return err
	}
	took(&tm.Files)
	if err := b.databases(ctx); err != nil {
		return err
	}
	took(&tm.Databases)
	if err := b.slrus(ctx); err != nil {
		return err
	}
	if err := b.twoPhase(ctx); err != nil {
		return err
	}
	took(&tm.SLRUs)
	if b.lazy != nil {
		if err := b.t.bytes(api.LazyManifestName, b.lazy.Encode()); err != nil {
			return err
		}
	}
	// Sparse: the segment is zeros but for the checkpoint record.
	for _, f := range wal.Files {
		if err := b.t.sparse("pg_wal/"+f.Name, f.Data); err != nil {
			return err
		}
	}
	// Last, as pg_basebackup does: a tar cut short has no pg_control, so
	// nothing can start on it.
	if err := b.t.bytes("global/pg_control", cf.Encode()); err != nil {
		return err
	}
	if err := b.t.close(); err != nil {
		return err
	}
	took(&tm.End)
	return nil
}

// startFiles builds what makes PostgreSQL start at the reader's LSN
// without replay: the WAL holding a shutdown checkpoint record there, and
// the pg_control pointing at it. prev is the record's xl_prev.
//
// The checkpoint is the one ingest keeps up to date, with redo at the
// record itself; pg_control is the stored one with that checkpoint as
// checkPointCopy, which is where a starting server takes its counters
// from (StartupXLOG), state "shut down", and no recovery or backup
// points.
func startFiles(ctx context.Context, r *datadir.DatadirReader, prev pgdata.LSN) (*pgdata.ControlFile, *pgdata.ShutdownCheckpointWAL, error) {
	cf, err := r.ControlFile(ctx)
	if err != nil {
		return nil, nil, err
	}
	// Relation files are cut into segments of RelSegSize blocks: 0 would
	// never end a segment.
	if cf.RelSegSize == 0 || cf.BlockSize != pgdata.BlockSize {
		return nil, nil, fmt.Errorf("stored pg_control has %d blocks of %d bytes per relation segment, want blocks of %d", cf.RelSegSize, cf.BlockSize, pgdata.BlockSize)
	}
	cp, err := r.Checkpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	if cp.ThisTimeLineID == 0 {
		return nil, nil, fmt.Errorf("stored checkpoint has timeline 0")
	}
	// A shutdown checkpoint neither switches timelines nor has running
	// transactions (CreateCheckPoint).
	cp.PrevTimeLineID = cp.ThisTimeLineID
	cp.OldestActiveXid = 0
	wal, err := pgdata.BuildShutdownCheckpointWAL(cf.SystemIdentifier, cp.ThisTimeLineID, uint64(cf.XLogSegSize), r.LSN().Align(), prev, cp)
	if err != nil {
		return nil, nil, err
	}
	cp.Redo = wal.RecordLSN
	cf.State = pgdata.DBShutdowned
	cf.Time = cp.Time
	cf.CheckPoint = wal.RecordLSN
	cf.CheckPointCopy = cp
	cf.MinRecoveryPoint, cf.MinRecoveryPointTLI = 0, 0
	cf.BackupStartPoint, cf.BackupEndPoint, cf.BackupEndRequired = 0, 0, false
	return cf, wal, nil
}
