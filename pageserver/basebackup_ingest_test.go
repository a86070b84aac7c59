package pageserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/basebackup"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/walredo"
)

// TestBasebackupAfterIngest runs the mixed workload on a cluster imported
// into a timeline, ingests its WAL, and starts stock PostgreSQL on
// basebackups at two LSNs: the end of the WAL, and a quiet point in the
// middle of the workload (after the step that creates and drops
// databases). Each starts without replay, dumps exactly what the
// original cluster dumped at that LSN, and pg_amcheck finds every heap and
// index consistent.
func TestBasebackupAfterIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the mixed workload")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	settings := workload.Settings()
	r := openRedoRepo(t)
	defer r.Close()
	src, _, tl, importLSN := importStartedCluster(ctx, t, r)
	const midStep = "databases"
	var midLSN pgdata.LSN
	var midDump string
	var midXid int64
	_, err := workload.Run(ctx, src.ConnString("postgres"), workload.Options{
		Seed:  5,
		Scale: 0.1,
		AfterStep: func(ctx context.Context, step workload.StepReport) error {
			if step.Name == midStep {
				midLSN, midDump, midXid = step.End, dumpAll(t, src), nextXid(t, src)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if midLSN == 0 {
		t.Fatalf("the workload has no step %q", midStep)
	}
	finalDump, finalXid := dumpAll(t, src), nextXid(t, src)
	if err := src.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	records := ingestAll(ctx, t, tl, filepath.Join(src.DataDir(), "pg_wal"), importLSN)
	finalLSN := tl.LastRecordLSN()
	if cf := readControl(t, src.DataDir()); finalLSN <= cf.CheckPoint {
		t.Fatalf("ingested %d records up to %v, not past the final shutdown checkpoint at %v", records, finalLSN, cf.CheckPoint)
	}
	// The insert position after a step is a record's end, except that a
	// record ending at a page boundary puts it after the next page's
	// header.
	if off := midLSN.PageOffset(); off == pgdata.XLogShortPageHeaderSize || off == pgdata.XLogLongPageHeaderSize {
		midLSN -= pgdata.LSN(off)
	}
	t.Logf("ingested %d records from %v to %v; middle of the workload at %v", records, importLSN, finalLSN, midLSN)

	for _, tc := range []struct {
		name string
		lsn  pgdata.LSN
		dump string
		xid  int64
	}{
		{"end of the WAL", finalLSN, finalDump, finalXid},
		{"after step " + midStep, midLSN, midDump, midXid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			tarball := takeBasebackup(t, tl, tc.lsn, basebackup.Options{})
			t.Logf("basebackup at %v: %d MiB in %v", tc.lsn, len(tarball)>>20, time.Since(began).Round(time.Millisecond))
			pg := newClusterFromTar(t, tarball, settings)
			if err := pg.Start(ctx); err != nil {
				t.Fatal(err)
			}
			assertCleanStart(t, pg)
			compareDumps(t, dumpAll(t, pg), tc.dump)
			amcheck(t, pg)
			// A reused XID would make rows of the original's transactions
			// look like the new server's own.
			if got := nextXid(t, pg); got < tc.xid {
				t.Errorf("next XID %d on the basebackup, want at least the original's %d", got, tc.xid)
			}
		})
	}
}

// openRedoRepo opens a repository in a new directory whose redo is real:
// walredo processes running the module built from walredo/pgext.
func openRedoRepo(t *testing.T) *repo.Repository {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root, err := os.MkdirTemp("", "zenith-basebackup-redo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	// Not 0700: the postgres OS user must reach the redo slots inside.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	ext, err := filepath.Abs(filepath.Join("..", "walredo", "pgext", walredo.ExtensionFile))
	if err != nil {
		t.Fatal(err)
	}
	wcfg := walredo.DefaultConfig()
	wcfg.Dir, wcfg.Extension = filepath.Join(root, "walredo"), ext
	m, err := walredo.Open(ctx, wcfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("walredo (build the module with make -C walredo/pgext): %v", err)
	}
	t.Cleanup(func() { m.Close() })
	cfg := repo.DefaultConfig(filepath.Join(root, "repo"))
	cfg.Redo = NewRedo(m)
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 0, 0, 0
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ingestAll ingests every record of the WAL in dir from start on, and
// returns how many.
func ingestAll(ctx context.Context, t *testing.T, tl *repo.Timeline, dir string, start pgdata.LSN) int {
	t.Helper()
	ing, err := walingest.NewWalIngest(ctx, tl, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	wr, err := pgdata.OpenWAL([]string{dir}, pgdata.WALReadOptions{Start: start})
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	n := 0
	for {
		rec, err := wr.Next()
		var eow *pgdata.EndOfWALError
		if errors.As(err, &eow) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := ing.Ingest(ctx, rec); err != nil {
			t.Fatalf("ingest record %d at %v: %v", n, rec.LSN, err)
		}
		n++
	}
}

// dumpAll returns pg_dumpall's output for a running cluster.
func dumpAll(t *testing.T, pg *pgcluster.Cluster) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := pgdump.DumpAll(ctx, pgdump.ClusterServer(pg))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// amcheck runs pg_amcheck on every relation of every database, indexes
// checked against their heaps; any corruption it reports fails the test.
func amcheck(t *testing.T, pg *pgcluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pgdump.Amcheck(ctx, pgdump.ClusterServer(pg)); err != nil {
		t.Error(err)
	}
}

// nextXid is the XID a running cluster assigns next, read without
// assigning one.
func nextXid(t *testing.T, pg *pgcluster.Cluster) int64 {
	t.Helper()
	conn := connect(t, pg, "postgres")
	defer conn.Close(context.Background())
	return queryInt(t, conn, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
}

// compareDumps checks that the dump of a cluster started from a
// basebackup equals the original's (pgdump.Compare: a sequence may be
// logged ahead), and that the dumps restore sequences at all.
func compareDumps(t *testing.T, got, want string) {
	t.Helper()
	c := pgdump.Compare(got, want)
	if err := c.Err(); err != nil {
		t.Errorf("pg_dumpall of the basebackup differs from the original's at that LSN:\n%v", err)
	}
	if c.Sequences == 0 {
		t.Errorf("the dump restores no sequence: the comparison of sequences is not tested")
	}
}
