package pageserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/walredo"
)

// TestIngestOracle is WAL ingest's oracle: a fresh cluster is imported,
// then runs the mixed workload (every record type the ingest handles,
// CREATE DATABASE with both strategies, DROP DATABASE, TRUNCATE, 2PC,
// multixacts) and a transaction left prepared, and is stopped cleanly.
// Its WAL since the import is ingested record by record, and at the last
// LSN the timeline must hold the stopped data directory: every database
// and relation, every fork's size and page (masked as PostgreSQL's
// wal_consistency_checking does), the relation maps, the SLRU segments,
// pg_twophase, and a checkpoint whose counters are at least pg_control's.
func TestIngestOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL 15 and the mixed workload")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	pg := pgtest.New(t, workload.Settings())
	m := openTestRedoManager(t)
	r := openIngestRepo(t, m)
	tn, tl := newTestTimeline(t, r)
	start, err := ImportDataDir(ctx, tl, pg.DataDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}

	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	rep, err := workload.Run(ctx, pg.ConnString("postgres"), workload.Options{Seed: 5})
	if err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("workload: %d steps in %v", len(rep.Steps), time.Since(began).Round(time.Millisecond))
	manySubtransactions(ctx, t, pg)
	leavePrepared(ctx, t, pg)
	cat := readCatalogs(ctx, t, pg)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	cf := readControl(t, pg.DataDir())

	began = time.Now()
	ing, err := NewWalIngest(ctx, tl, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	counts, beforeLast := ingestWAL(t, ing, filepath.Join(pg.DataDir(), "pg_wal"), start)
	t.Logf("ingested WAL %v-%v in %v", start, tl.LastRecordLSN(), time.Since(began).Round(time.Millisecond))
	report(t, "records ingested, by resource manager", counts)
	for _, want := range []string{"Storage", "Database", "RelMap", "Transaction", "CLOG", "MultiXact", "Standby", "Heap", "XLOG"} {
		if counts[want] == 0 {
			t.Errorf("no %s record was ingested: the workload should write them", want)
		}
	}
	if got := tl.PrevRecordLSN(); got != cf.CheckPoint {
		t.Fatalf("last record ingested starts at %v, want the shutdown checkpoint pg_control points at, %v", got, cf.CheckPoint)
	}

	o := &oracle{t: t, ctx: ctx, m: m, tenant: tn.ID().String(), rd: NewDatadirReader(tl, tl.LastRecordLSN()), dir: pg.DataDir(), cat: cat, tally: map[string]int{}}
	o.checkDatabases()
	o.checkSLRUs()
	o.checkTwoPhase()
	// The shutdown checkpoint replaces the stored one: what the ingest
	// tracked shows in the checkpoint as of the record before it.
	o.checkCheckpoint("before the shutdown checkpoint", beforeLast, cf)
	final, err := o.rd.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.checkCheckpoint("at the end", final, cf)
	report(t, fmt.Sprintf("values compared at %v", tl.LastRecordLSN()), o.tally)
}

// openTestRedoManager opens a walredo Manager on the module built from
// walredo/pgext (make is a no-op when it is up to date).
func openTestRedoManager(t *testing.T) *walredo.Manager {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	binDir, err := pgcluster.FindBinDir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	pgext, err := filepath.Abs(filepath.Join("..", "walredo", "pgext"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := osexec.CommandContext(ctx, "make", "-s", "-C", pgext, "PG_CONFIG="+filepath.Join(binDir, "pg_config")).CombinedOutput(); err != nil {
		t.Fatalf("build the walredo module: %v\n%s", err, out)
	}
	// Not t.TempDir(): the postgres OS user must reach the scratch
	// directory.
	dir, err := os.MkdirTemp("", "zenith-ingest-walredo-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := walredo.DefaultConfig()
	cfg.Dir, cfg.BinDir, cfg.Extension = filepath.Join(dir, "walredo"), binDir, filepath.Join(pgext, walredo.ExtensionFile)
	m, err := walredo.Open(ctx, cfg, zerolog.New(zerolog.ConsoleWriter{Out: testLogWriter{t}, NoColor: true}).Level(zerolog.WarnLevel))
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close walredo: %v", err)
		}
		os.RemoveAll(dir)
	})
	return m
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// openIngestRepo opens a repository in a temporary directory whose reads
// redo through m, with the background flush on (ingest of a whole
// workload does not fit in memory comfortably) and GC off.
func openIngestRepo(t *testing.T, m *walredo.Manager) *repo.Repository {
	t.Helper()
	cfg := repo.DefaultConfig(t.TempDir())
	cfg.Redo = NewRedo(m)
	cfg.GCInterval = 0
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close repository: %v", err)
		}
	})
	return r
}

// manySubtransactions commits a transaction with more subtransactions
// than a CLOG page has xids: XLOG_XACT_ASSIGNMENT records, a commit
// record listing them all, and CLOG_ZEROPAGE.
func manySubtransactions(ctx context.Context, t *testing.T, pg *pgcluster.Cluster) {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec(t, conn,
		"CREATE TABLE ingest_subxacts (id int)",
		fmt.Sprintf(`DO $$ BEGIN
			FOR i IN 1..%d LOOP
				BEGIN INSERT INTO ingest_subxacts VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END;
			END LOOP;
		END $$`, pgdata.ClogXactsPerPage+100),
	)
}

// leavePrepared prepares a transaction and leaves it so, for pg_twophase.
func leavePrepared(ctx context.Context, t *testing.T, pg *pgcluster.Cluster) {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec(t, conn,
		"CREATE TABLE ingest_prepared (id int)",
		"BEGIN",
		"INSERT INTO ingest_prepared SELECT generate_series(1, 10)",
		"SAVEPOINT s",
		"INSERT INTO ingest_prepared VALUES (11)",
		"PREPARE TRANSACTION 'ingest_left_prepared'",
	)
}

// ingestWAL ingests every record of the WAL in walDir from start on,
// counts them by resource manager, and returns the checkpoint as of the
// record before the last.
func ingestWAL(t *testing.T, ing *WalIngest, walDir string, start pgdata.LSN) (map[string]int, pgdata.CheckPoint) {
	t.Helper()
	r, err := pgdata.OpenWAL([]string{walDir}, pgdata.WALReadOptions{Start: start})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.SegmentSize() != ing.SegSize() || r.SystemID() != ing.SystemID() {
		t.Errorf("WAL has segment size %d, system id %d; the ingest says %d, %d", r.SegmentSize(), r.SystemID(), ing.SegSize(), ing.SystemID())
	}
	counts := map[string]int{}
	var before pgdata.CheckPoint
	for {
		rec, err := r.Next()
		var eow *pgdata.EndOfWALError
		if errors.As(err, &eow) {
			return counts, before
		}
		if err != nil {
			t.Fatalf("read WAL: %v", err)
		}
		before = ing.CheckPoint()
		if err := ing.Ingest(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		counts[rec.Rmgr().String()]++
	}
}

// relInfo is what the catalog says about a relfilenode.
type relInfo struct {
	name      string
	kind      string // relkind
	am        string // access method; "" for sequences
	increment int64  // of a sequence
}

// catalogs are the relations of every database the test can connect to,
// by database OID (0 for shared catalogs) and relfilenode, and the
// databases created with STRATEGY WAL_LOG.
type catalogs struct {
	rels   map[[2]uint32]relInfo
	walLog map[uint32]bool
}

func readCatalogs(ctx context.Context, t *testing.T, pg *pgcluster.Cluster) *catalogs {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	dbs := map[string]uint32{}
	rows, err := conn.Query(ctx, "SELECT datname, oid FROM pg_database WHERE datallowconn")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		var oid uint32
		if err := rows.Scan(&name, &oid); err != nil {
			t.Fatal(err)
		}
		dbs[name] = oid
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	c := &catalogs{rels: map[[2]uint32]relInfo{}, walLog: map[uint32]bool{dbs[workload.DatabaseWALLog]: true}}
	for name, oid := range dbs {
		dconn, err := pgx.Connect(ctx, pg.ConnString(name))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := dconn.Query(ctx, `
			SELECT pg_relation_filenode(c.oid)::int8, c.relisshared, c.relname, c.relkind::text,
			       coalesce(am.amname, ''), coalesce(s.seqincrement, 0)
			FROM pg_class c
			LEFT JOIN pg_am am ON am.oid = c.relam
			LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
			WHERE pg_relation_filenode(c.oid) IS NOT NULL`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var node int64
			var shared bool
			var ri relInfo
			if err := rows.Scan(&node, &shared, &ri.name, &ri.kind, &ri.am, &ri.increment); err != nil {
				t.Fatal(err)
			}
			db := oid
			if shared {
				db = 0
			}
			c.rels[[2]uint32{db, uint32(node)}] = ri
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		dconn.Close(ctx)
	}
	return c
}

func report(t *testing.T, what string, tally map[string]int) {
	keys := make([]string, 0, len(tally))
	for k := range tally {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", what)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %7d  %s", tally[k], k)
	}
	t.Log(b.String())
}
