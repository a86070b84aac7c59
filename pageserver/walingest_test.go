package pageserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/walredo"
)

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
func ingestWAL(t *testing.T, ing *walingest.WalIngest, walDir string, start pgdata.LSN) (map[string]int, pgdata.CheckPoint) {
	t.Helper()
	return ingestWALEach(t, ing, walDir, start, nil)
}

// ingestWALEach is ingestWAL that also calls each, if set, with every
// record after its ingest.
func ingestWALEach(t *testing.T, ing *walingest.WalIngest, walDir string, start pgdata.LSN, each func(*pgdata.Record)) (map[string]int, pgdata.CheckPoint) {
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
		if each != nil {
			each(rec)
		}
	}
}

// importStartedCluster imports a fresh cluster with the workload's
// settings into a new timeline of r and starts it; start is the import's
// LSN.
func importStartedCluster(ctx context.Context, t *testing.T, r *repo.Repository) (pg *pgcluster.Cluster, tn *repo.Tenant, tl *repo.Timeline, start pgdata.LSN) {
	t.Helper()
	pg = pgtest.New(t, workload.Settings())
	tn, tl = newTestTimeline(t, r)
	start, err := walingest.ImportDataDir(ctx, tl, pg.DataDir(), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return pg, tn, tl, start
}
