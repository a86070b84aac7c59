package pageserver_test

// The page server's two oracle tests, in the external test package so that
// they can use the page oracle (pagecheck) that the regression-suite test
// shares; the helpers they need are exported in export_test.go.

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/pagecheck"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/walredo"
)

// importFreshCluster imports a fresh cluster with the workload's settings
// into a new timeline of an ingest repository and starts it
// (importStartedCluster), and returns the repository's redo manager too.
func importFreshCluster(ctx context.Context, t *testing.T) (pg *pgcluster.Cluster, m *walredo.Manager, tn *repo.Tenant, tl *repo.Timeline, start pgdata.LSN) {
	t.Helper()
	m = pageserver.OpenTestRedoManager(t)
	pg, tn, tl, start = pageserver.ImportStartedCluster(ctx, t, pageserver.OpenIngestRepo(t, m))
	return pg, m, tn, tl, start
}

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

	pg, m, tn, tl, start := importFreshCluster(ctx, t)
	began := time.Now()
	rep, err := workload.Run(ctx, pg.ConnString("postgres"), workload.Options{Seed: 5})
	if err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("workload: %d steps in %v", len(rep.Steps), time.Since(began).Round(time.Millisecond))
	pageserver.ManySubtransactions(ctx, t, pg)
	pageserver.LeavePrepared(ctx, t, pg)
	cat := pagecheck.ReadCatalogs(ctx, t, pg.ConnString, workload.DatabaseWALLog)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	cf := pageserver.ReadControl(t, pg.DataDir())

	began = time.Now()
	ing, err := walingest.NewWalIngest(ctx, tl, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	counts, beforeLast := pageserver.IngestWAL(t, ing, filepath.Join(pg.DataDir(), "pg_wal"), start)
	t.Logf("ingested WAL %v-%v in %v", start, tl.LastRecordLSN(), time.Since(began).Round(time.Millisecond))
	pagecheck.Report(t, "records ingested, by resource manager", counts)
	for _, want := range []string{"Storage", "Database", "RelMap", "Transaction", "CLOG", "MultiXact", "Standby", "Heap", "XLOG"} {
		if counts[want] == 0 {
			t.Errorf("no %s record was ingested: the workload should write them", want)
		}
	}
	if got := tl.PrevRecordLSN(); got != cf.CheckPoint {
		t.Fatalf("last record ingested starts at %v, want the shutdown checkpoint pg_control points at, %v", got, cf.CheckPoint)
	}

	o := pagecheck.New(ctx, t, m, tn.ID().String(), datadir.NewDatadirReader(tl, tl.LastRecordLSN()), pg.DataDir(), cat)
	o.CheckDatabases()
	o.CheckSLRUs()
	o.CheckTwoPhase(1)
	// The shutdown checkpoint replaces the stored one: what the ingest
	// tracked shows in the checkpoint as of the record before it.
	o.CheckCheckpoint("before the shutdown checkpoint", beforeLast, cf)
	final, err := o.Reader().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.CheckCheckpoint("at the end", final, cf)
	o.Report(fmt.Sprintf("values compared at %v", tl.LastRecordLSN()))
}

// TestPageServerEndToEnd is the page server's acceptance run, with the real
// `zenith pageserver run` process: a compute started from a basebackup of
// an imported initdb cluster has the page server as its synchronous
// standby and runs the mixed workload (CREATE DATABASE with both
// strategies included). At a quiet LSN L, after the databases step, a
// pg_dumpall is taken; the page server is killed with SIGKILL mid-workload
// and restarted (commits wait meanwhile, and continue once it is back).
// At the end:
//   - a server started on a basebackup at L dumps what the compute dumped
//     at L;
//   - a server started on a basebackup at the final LSN dumps what the
//     compute dumps at the end, and pg_amcheck --heapallindexed finds it
//     clean;
//   - the page server's repository, reopened from disk after a clean
//     stop, holds every page of every relation (masked), every SLRU page,
//     the two-phase file and the directories exactly as the stopped
//     compute's data directory has them.
func TestPageServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the page server, PostgreSQL 15 and the mixed workload")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	ps := pageserver.StartPageServerProcess(t)
	conn := ps.Connect(t)
	tenant := pageserver.CreateImportedTenant(t, conn)
	settings := workload.Settings()
	settings["synchronous_standby_names"] = walreceiver.ReplicationSlot
	settings["synchronous_commit"] = "on"
	compute := pageserver.StartFromBasebackup(t, conn, fmt.Sprintf("basebackup %s main", tenant), settings)
	pageserver.CallMeMaybe(ctx, t, conn, tenant, compute)
	cc := pageserver.Connect(t, compute, "postgres")
	defer cc.Close(ctx)

	var (
		quietLSN  pgdata.LSN
		quietDump string
		restarted = make(chan error, 1)
	)
	rep, err := workload.Run(ctx, compute.ConnString("postgres"), workload.Options{
		Seed:  11,
		Scale: 0.5,
		AfterStep: func(ctx context.Context, step workload.StepReport) error {
			switch step.Name {
			case "databases":
				// Nothing runs between steps: the page server's last
				// record is the compute's, and the dump is of that LSN.
				// (A new connection: the page server has been restarted.)
				quietLSN = pageserver.WaitIngested(t, ps.Connect(t), tenant, cc)
				quietDump = pageserver.DumpAll(t, compute)
				t.Logf("quiet point after %q: %v", step.Name, quietLSN)
			case "row_locks":
				// SIGKILL, and a restart a moment later: the next
				// step's commits wait for the page server meanwhile.
				conn.Close(ctx)
				ps.Kill(t)
				go func() {
					time.Sleep(2 * time.Second)
					restarted <- ps.Restart()
				}()
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("workload: %v", err)
	}
	if err := <-restarted; err != nil {
		t.Fatalf("restart the page server: %v", err)
	}
	t.Logf("workload: %d steps", len(rep.Steps))
	if quietLSN == 0 {
		t.Fatal("the workload has no databases step: no quiet point was taken")
	}
	conn = ps.Connect(t)
	pageserver.LeavePrepared(ctx, t, compute)
	cat := pagecheck.ReadCatalogs(ctx, t, compute.ConnString, workload.DatabaseWALLog)
	finalDump := pageserver.DumpAll(t, compute)
	// A clean stop sends the shutdown checkpoint to the synchronous
	// standby before the compute exits.
	cc.Close(ctx)
	if err := compute.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	cf := pageserver.ReadControl(t, compute.DataDir())
	final := waitLastRecord(t, conn, tenant, cf.CheckPoint)
	t.Logf("compute stopped at checkpoint %v; page server's last record ends at %v", cf.CheckPoint, final)

	for _, b := range []struct {
		what string
		lsn  pgdata.LSN
		want string
	}{
		{"quiet point", quietLSN, quietDump},
		{"final LSN", final, finalDump},
	} {
		pg := pageserver.StartFromBasebackup(t, conn, fmt.Sprintf("basebackup %s main %v", tenant, b.lsn), workload.Settings())
		pageserver.CompareDumps(t, pageserver.DumpAll(t, pg), b.want)
		if b.lsn == final {
			pageserver.Amcheck(t, pg)
		}
		if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
			t.Fatal(err)
		}
		t.Logf("basebackup at the %s %v: pg_dumpall equal", b.what, b.lsn)
	}

	// The repository as the page server left it on disk.
	conn.Close(ctx)
	ps.Stop(t)
	m := pageserver.OpenTestRedoManager(t)
	r, err := repo.Open(repo.Config{Workdir: ps.Dir(), Redo: pageserver.NewRedo(m), Logger: zerolog.Nop(), InMemoryLayerLimit: repo.DefaultConfig("").InMemoryLayerLimit})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tn, err := r.Tenant(tenant)
	if err != nil {
		t.Fatal(err)
	}
	tl := mainTimeline(t, ps.Dir(), tn)
	if got := tl.LastRecordLSN(); got != final {
		t.Fatalf("reopened repository: last record %v, want %v", got, final)
	}
	o := pagecheck.New(ctx, t, m, tenant.String(), datadir.NewDatadirReader(tl, final), compute.DataDir(), cat)
	o.CheckDatabases()
	o.CheckSLRUs()
	o.CheckTwoPhase(1)
	cp, err := o.Reader().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.CheckCheckpoint("at the end", cp, cf)
	o.Report(fmt.Sprintf("values compared at %v", final))
}

// waitLastRecord waits until main's last record is the one that starts at
// start (the compute's shutdown checkpoint), and returns its end.
func waitLastRecord(t *testing.T, conn *pgx.Conn, tenant id.TenantID, start pgdata.LSN) pgdata.LSN {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		main := pageserver.BranchNamed(t, pageserver.Rows(t, conn, "branch_list "+tenant.String()), "main")
		last, err1 := pgdata.ParseLSN(main["last_record_lsn"])
		prev, err2 := pgdata.ParseLSN(main["prev_record_lsn"])
		if err1 != nil || err2 != nil {
			t.Fatalf("branch_list: %v %v", err1, err2)
		}
		if prev == start {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("main's last record starts at %v, not at %v, after a minute", prev, start)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mainTimeline opens the timeline the tenant's branch "main" names.
func mainTimeline(t *testing.T, dir string, tn *repo.Tenant) *repo.Timeline {
	t.Helper()
	for _, info := range tn.Timelines() {
		if info.Ancestor.IsZero() {
			tl, err := tn.Timeline(info.ID)
			if err != nil {
				t.Fatal(err)
			}
			return tl
		}
	}
	t.Fatalf("tenant %s in %s has no root timeline", tn.ID(), dir)
	return nil
}
