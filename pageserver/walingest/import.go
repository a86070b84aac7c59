package walingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// ErrNotShutDown is returned by ImportDataDir for a data directory whose
// pg_control does not say "shut down": a running server's or a crashed
// one's files are not a consistent state to import.
var ErrNotShutDown = errors.New("data directory was not shut down cleanly")

// What the import does not copy, and why (top-level names of the data
// directory, and file names anywhere):
//
//   - pg_wal: WAL before the import is not history of the new timeline;
//     only the last checkpoint record is read, to find where the next WAL
//     starts. A basebackup writes its own WAL segment.
//   - postmaster.pid, postmaster.opts, current_logfiles, log: they describe
//     the server process that ran on the directory, not the database.
//   - pg_stat, pg_stat_tmp: statistics, not WAL-logged; a compute starts
//     with empty ones.
//   - pg_subtrans, pg_serial, pg_notify, pg_snapshots, pg_dynshmem:
//     PostgreSQL truncates or recreates their contents at every start.
//   - pg_commit_ts: commit timestamps, which Zenith computes never track
//     (track_commit_timestamp=off).
//   - pg_replslot, pg_logical: replication slots and logical decoding
//     state belong to the old server.
//   - pg_internal.init (relcache init files), pgsql_tmp and temporary
//     relations' "t<backend>_<relfilenode>" files: rebuilt or discarded at
//     start.
//
// A backup_label or tablespace_map (a base backup taken while the server
// ran) is refused.
var SkippedTopLevel = map[string]bool{
	"pg_wal": true, "postmaster.pid": true, "postmaster.opts": true,
	"current_logfiles": true, "log": true, "pg_stat": true, "pg_stat_tmp": true,
	"pg_subtrans": true, "pg_serial": true, "pg_notify": true, "pg_snapshots": true,
	"pg_dynshmem": true, "pg_commit_ts": true, "pg_replslot": true, "pg_logical": true,
}

// importSLRUs maps each stored SLRU to its directory.
var importSLRUs = []key.SLRU{key.Clog, key.MultiXactOffsets, key.MultiXactMembers}

// progressEvery is how many bytes of relation data pass between progress
// log lines.
const progressEvery = 256 << 20

// ImportDataDir stores the data directory dir, which a PostgreSQL 15
// server has cleanly shut down, into the empty timeline tl, as one record.
// It returns the import LSN: the end of the shutdown checkpoint record
// pg_control points at (EndRecPtr, where the next WAL record would start).
// Every value is stored at that LSN; afterwards the timeline's last record
// LSN is that LSN and its previous record LSN is the checkpoint record's
// start, so WAL ingest continues right after the checkpoint.
//
// It stores every block of every fork of every relation in global/ and
// base/*/ with their sizes and the database and relation directories, the
// relmapper files, the pg_xact and pg_multixact segments, pg_twophase,
// pg_control and its checkpoint, and the remaining small files (PG_VERSION,
// configuration files) as auxiliary files. See SkippedTopLevel for what is
// left out.
//
// Tablespaces other than pg_default and pg_global are imported with their
// databases: each pg_tblspc/<OID> is a symbolic link to the tablespace's
// directory, or a directory itself. Its location is locations[OID] if
// given (the directory came in a tar, tarfile.ExtractImport), else the
// link's target, else "" (an in-place tablespace).
func ImportDataDir(ctx context.Context, tl *repo.Timeline, dir string, locations map[uint32]string, log zerolog.Logger) (pgdata.LSN, error) {
	control, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		return 0, fmt.Errorf("import %s: %w", dir, err)
	}
	cf, err := pgdata.ParseControlFile(control)
	if err != nil {
		return 0, fmt.Errorf("import %s: %w", dir, err)
	}
	if cf.State != pgdata.DBShutdowned {
		return 0, fmt.Errorf("import %s: pg_control state is %q, want %q (stop the server with pg_ctl stop -m fast first): %w",
			dir, cf.State, pgdata.DBShutdowned, ErrNotShutDown)
	}
	for _, name := range []string{"backup_label", "tablespace_map"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return 0, fmt.Errorf("import %s: %s exists: a base backup in progress cannot be imported", dir, name)
		}
	}
	if cf.BlockSize != pgdata.BlockSize {
		return 0, fmt.Errorf("import %s: block size %d, want %d", dir, cf.BlockSize, pgdata.BlockSize)
	}
	start, end, err := checkpointRecord(dir, cf)
	if err != nil {
		return 0, fmt.Errorf("import %s: %w", dir, err)
	}
	log = log.With().Str("datadir", dir).Stringer("lsn", end).Logger()
	log.Info().Stringer("checkpoint", start).Msg("importing data directory")

	im := &importer{w: datadir.NewDatadirWriter(tl), dir: dir, locations: locations, relSegSize: cf.RelSegSize, log: log}
	im.w.Begin(end)
	if err := im.run(ctx, cf, control); err != nil {
		return 0, fmt.Errorf("import %s: %w", dir, err)
	}
	if err := im.w.Commit(start); err != nil {
		return 0, fmt.Errorf("import %s: %w", dir, err)
	}
	log.Info().Int("files", im.files).Int64("bytes", im.bytes).Msg("imported data directory")
	return end, nil
}

// checkpointRecord reads the checkpoint record pg_control points at from
// pg_wal and returns its start and end, checking that it is a shutdown
// checkpoint.
func checkpointRecord(dir string, cf *pgdata.ControlFile) (start, end pgdata.LSN, err error) {
	r, err := pgdata.OpenWAL([]string{filepath.Join(dir, "pg_wal")}, pgdata.WALReadOptions{Start: cf.CheckPoint})
	if err != nil {
		return 0, 0, fmt.Errorf("read checkpoint record at %v: %w", cf.CheckPoint, err)
	}
	defer r.Close()
	rec, err := r.Next()
	if err != nil {
		return 0, 0, fmt.Errorf("read checkpoint record at %v: %w", cf.CheckPoint, err)
	}
	if rec.LSN != cf.CheckPoint || rec.Rmgr() != pgdata.RmgrXLOG || rec.RmgrInfo() != pgdata.XLogCheckpointShutdown {
		return 0, 0, fmt.Errorf("the record at %v is not the shutdown checkpoint pg_control points at", cf.CheckPoint)
	}
	return rec.LSN, rec.EndLSN, nil
}

// importer walks one data directory into a DatadirWriter.
type importer struct {
	w          *datadir.DatadirWriter
	dir        string
	locations  map[uint32]string
	relSegSize uint32
	log        zerolog.Logger
	files      int
	bytes      int64
	logged     int64
}

func (im *importer) run(ctx context.Context, cf *pgdata.ControlFile, control []byte) error {
	if err := im.w.PutControlFile(control); err != nil {
		return err
	}
	if err := im.w.PutCheckpoint(&cf.CheckPointCopy); err != nil {
		return err
	}
	entries, err := os.ReadDir(im.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		var err error
		switch {
		case SkippedTopLevel[name]:
			continue
		case name == "global":
			err = im.database(ctx, "global", datadir.Database{SpcNode: pgdata.GlobalTablespaceOID, DbNode: 0})
		case name == "base":
			err = im.base(ctx)
		case name == "pg_tblspc":
			err = im.tablespaces(ctx)
		case name == "pg_xact" || name == "pg_multixact":
			continue // below, in a fixed order
		case name == "pg_twophase":
			err = im.twoPhase(ctx)
		case e.Type().IsRegular():
			err = im.aux(ctx, name)
		case e.IsDir():
			im.log.Warn().Str("dir", name).Msg("unknown directory in the data directory: not imported")
		default:
			return fmt.Errorf("%s is neither a file nor a directory", name)
		}
		if err != nil {
			return err
		}
	}
	for _, s := range importSLRUs {
		if err := im.slru(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// tablespaces imports each tablespace of pg_tblspc and the databases in
// its directory for PostgreSQL 15 (pgdata.TablespaceVersionDirectory;
// those of other versions sharing the location are not this cluster's).
func (im *importer) tablespaces(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(im.dir, "pg_tblspc"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := "pg_tblspc/" + e.Name()
		oid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || oid == 0 {
			return fmt.Errorf("%s is not a tablespace (pg_tblspc holds one link per tablespace, named by its OID)", p)
		}
		ts := datadir.Tablespace{OID: uint32(oid)}
		switch loc, ok := im.locations[ts.OID]; {
		case ok:
			ts.Location = loc
		case e.Type()&fs.ModeSymlink != 0:
			if ts.Location, err = os.Readlink(filepath.Join(im.dir, p)); err != nil {
				return err
			}
		case !e.IsDir():
			return fmt.Errorf("%s is neither a link to a tablespace's directory nor a directory", p)
		}
		if err := im.w.CreateTablespace(ctx, ts); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		vdir := p + "/" + pgdata.TablespaceVersionDirectory
		dbs, err := os.ReadDir(filepath.Join(im.dir, vdir))
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: tablespace %d has no %s directory: not a PostgreSQL 15 tablespace", p, oid, pgdata.TablespaceVersionDirectory)
		}
		if err != nil {
			return err
		}
		for _, d := range dbs {
			if d.Name() == "pgsql_tmp" {
				continue
			}
			db, err := strconv.ParseUint(d.Name(), 10, 32)
			if err != nil || !d.IsDir() {
				return fmt.Errorf("%s/%s is not a database directory", vdir, d.Name())
			}
			if err := im.database(ctx, vdir+"/"+d.Name(), datadir.Database{SpcNode: ts.OID, DbNode: uint32(db)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (im *importer) base(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(im.dir, "base"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "pgsql_tmp" {
			continue
		}
		oid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || !e.IsDir() {
			return fmt.Errorf("base/%s is not a database directory", e.Name())
		}
		if err := im.database(ctx, "base/"+e.Name(), datadir.Database{SpcNode: pgdata.DefaultTablespaceOID, DbNode: uint32(oid)}); err != nil {
			return err
		}
	}
	return nil
}

// relFork is one fork of a relation and the sizes of its segment files.
type relFork struct {
	rel  pgdata.RelFileNode
	fork pgdata.ForkNumber
	segs map[uint32]int64
}

// database imports one database directory (global/ or base/<oid>/).
func (im *importer) database(ctx context.Context, rel string, db datadir.Database) error {
	if err := im.w.CreateDatabase(ctx, db); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(im.dir, rel))
	if err != nil {
		return err
	}
	forks := map[[2]uint32]*relFork{}
	for _, e := range entries {
		name := e.Name()
		p := rel + "/" + name
		switch {
		case name == "pg_control" && db.DbNode == 0:
			continue // stored by run
		case name == "pg_internal.init" || name == "pgsql_tmp" || isTempRelation(name):
			continue
		case name == "pg_filenode.map":
			b, err := im.read(p)
			if err != nil {
				return err
			}
			if err := im.w.PutRelMap(db, b); err != nil {
				return err
			}
			continue
		case name == "PG_VERSION":
			if err := im.aux(ctx, p); err != nil {
				return err
			}
			continue
		}
		r, fork, segNo, err := pgdata.ParseRelationPath(p)
		if err != nil {
			return fmt.Errorf("unexpected file in %s: %w", rel, err)
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() || info.Size()%pgdata.BlockSize != 0 {
			return fmt.Errorf("%s: not a regular file of whole %d-byte blocks", p, pgdata.BlockSize)
		}
		k := [2]uint32{r.RelNode, uint32(fork)}
		if forks[k] == nil {
			forks[k] = &relFork{rel: r, fork: fork, segs: map[uint32]int64{}}
		}
		forks[k].segs[segNo] = info.Size()
	}
	keys := make([][2]uint32, 0, len(forks))
	for k := range forks {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]uint32) int { return slices.Compare(a[:], b[:]) })
	for _, k := range keys {
		if err := im.relation(ctx, forks[k]); err != nil {
			return err
		}
	}
	return nil
}

// isTempRelation recognises a temporary relation's file: "t<backend>_<relfilenode>...".
func isTempRelation(name string) bool {
	b, _, ok := strings.Cut(name, "_")
	if !ok || len(b) < 2 || b[0] != 't' {
		return false
	}
	_, err := strconv.ParseUint(b[1:], 10, 32)
	return err == nil
}

// relation imports every segment of one fork: its blocks and its size.
// Every segment but the last must be full, as md.c keeps them.
func (im *importer) relation(ctx context.Context, rf *relFork) error {
	segSize := int64(im.relSegSize) * pgdata.BlockSize
	n := uint32(len(rf.segs))
	var blocks uint32
	for seg := range n {
		size, ok := rf.segs[seg]
		if !ok {
			return fmt.Errorf("%s: segment %d is missing", pgdata.RelationPath(rf.rel, rf.fork, 0), seg)
		}
		if seg < n-1 && size != segSize {
			return fmt.Errorf("%s: %d bytes, but a later segment exists", pgdata.RelationPath(rf.rel, rf.fork, seg), size)
		}
		base := seg * im.relSegSize
		err := im.readBlocks(ctx, pgdata.RelationPath(rf.rel, rf.fork, seg), func(i uint32, page []byte) error {
			return im.w.PutRelBlock(rf.rel, rf.fork, base+i, value.Image(page))
		})
		if err != nil {
			return err
		}
		blocks = base + uint32(size/pgdata.BlockSize)
	}
	return im.w.SetRelSize(ctx, rf.rel, rf.fork, blocks)
}

// readBlocks calls put with each 8 KiB block of the file p (relative to
// the data directory), in order.
func (im *importer) readBlocks(ctx context.Context, p string, put func(i uint32, page []byte) error) error {
	f, err := os.Open(filepath.Join(im.dir, filepath.FromSlash(p)))
	if err != nil {
		return err
	}
	defer f.Close()
	im.files++
	for i := uint32(0); ; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		page := make([]byte, pgdata.BlockSize)
		_, err := io.ReadFull(f, page)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s block %d: %w", p, i, err)
		}
		if err := put(i, page); err != nil {
			return err
		}
		im.progress(pgdata.BlockSize)
	}
}

func (im *importer) progress(n int64) {
	im.bytes += n
	if im.bytes-im.logged >= progressEvery {
		im.logged = im.bytes
		im.log.Info().Int("files", im.files).Int64("bytes", im.bytes).Msg("import progress")
	}
}

// read reads a whole small file, p relative to the data directory.
func (im *importer) read(p string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(im.dir, filepath.FromSlash(p)))
	if err != nil {
		return nil, err
	}
	im.files++
	im.progress(int64(len(b)))
	return b, nil
}

func (im *importer) aux(ctx context.Context, p string) error {
	b, err := im.read(p)
	if err != nil {
		return err
	}
	return im.w.PutAuxFile(ctx, p, b)
}

// slru imports every segment of one SLRU: its pages and segment sizes.
func (im *importer) slru(ctx context.Context, s key.SLRU) error {
	entries, err := os.ReadDir(filepath.Join(im.dir, filepath.FromSlash(s.String())))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		segNo, err := datadir.ParseSLRUSegmentName(e.Name())
		if err != nil || !e.Type().IsRegular() {
			return fmt.Errorf("unexpected file %s/%s: not an SLRU segment", s, e.Name())
		}
		p := path.Join(s.String(), e.Name())
		var pages uint32
		err = im.readBlocks(ctx, p, func(i uint32, page []byte) error {
			if i >= pgdata.SLRUPagesPerSegment {
				return fmt.Errorf("%s: more than %d pages", p, pgdata.SLRUPagesPerSegment)
			}
			pages = i + 1
			return im.w.PutSLRUPage(s, segNo, i, value.Image(page))
		})
		if err != nil {
			return err
		}
		if err := im.w.SetSLRUSegmentSize(ctx, s, segNo, pages); err != nil {
			return err
		}
	}
	return nil
}

// twoPhase imports pg_twophase: one state file per prepared transaction,
// named by its xid in 8 hexadecimal digits (TwoPhaseFilePath).
func (im *importer) twoPhase(ctx context.Context) error {
	entries, err := os.ReadDir(filepath.Join(im.dir, "pg_twophase"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		xid, err := datadir.ParseTwoPhaseName(e.Name())
		if err != nil || !e.Type().IsRegular() {
			return fmt.Errorf("unexpected file pg_twophase/%s: not a two-phase state file", e.Name())
		}
		b, err := im.read("pg_twophase/" + e.Name())
		if err != nil {
			return err
		}
		if err := im.w.PutTwoPhaseFile(ctx, xid, b); err != nil {
			return err
		}
	}
	return nil
}
