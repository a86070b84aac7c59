package control_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/repo/remote/s3test"
)

// TestPageserverDiskLoss loses the page server's whole directory (all but
// its config) twice: after a clean stop, whose last flush is uploaded, and
// after a SIGKILL, when the WAL above the remote-consistent LSN comes back
// from the safekeepers. Each time, the page server restarted on the same
// remote storage (the default: a directory inside the repository) serves
// the tenant with all its history: a re-created compute dumps as the live
// one did, and so does a branch made before the losses.
func TestPageserverDiskLoss(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 1})
	loseDisk(t, env)
	if idx, _ := filepath.Glob(filepath.Join(env.RepoDir, "remote_storage", "tenants", "*", "timelines", "*", "index.json")); len(idx) != 2 {
		t.Errorf("timeline indexes in the repository's remote storage: %v, want main's and before's", idx)
	}
}

// TestPageserverDiskLossS3 is TestPageserverDiskLoss on a real S3 server
// (versitygw): zenith init --remote-storage s3://..., the endpoint and
// credentials from the standard AWS environment variables.
func TestPageserverDiskLossS3(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the zenith binary and versitygw; skipped in -short mode")
	}
	srv := s3test.Start(t, "zenith")
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 1, Environ: srv.Env(),
		MoreInitArgs: []string{"--remote-storage", "s3://zenith/layers"}})
	loseDisk(t, env)
	if _, err := os.Stat(filepath.Join(env.RepoDir, "remote_storage")); err == nil {
		t.Errorf("remote_storage directory in the repository: the layers went there, not to S3")
	}
	if idx, _ := filepath.Glob(filepath.Join(srv.Dir, "zenith", "layers", "tenants", "*", "timelines", "*", "index.json")); len(idx) != 2 {
		t.Errorf("timeline indexes in the S3 bucket: %v, want main's and before's", idx)
	}
}

func loseDisk(t *testing.T, env *zenithtest.Env) {
	t.Helper()
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE acct (id int PRIMARY KEY, balance bigint, note text)")
	exec1(t, conn, "INSERT INTO acct SELECT g, g * 10, md5(g::text) FROM generate_series(1, 20000) g")
	lsn := queryString(t, conn, "SELECT pg_current_wal_insert_lsn()::text")
	env.Zenith("branch", "before", "main@"+lsn)
	wantBefore := dumpAll(t, pg)
	exec1(t, conn, "UPDATE acct SET balance = balance + 1 WHERE id % 7 = 0")
	exec1(t, conn, "CREATE INDEX acct_note ON acct (note)")
	want := dumpAll(t, pg)
	conn.Close(t.Context())
	pg.Stop()

	// A clean stop: the last flush is uploaded.
	env.Zenith("pageserver", "stop")
	wipePageserver(t, env)
	env.Zenith("pageserver", "start")
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after a clean stop and the loss of the page server's directory: pg_dumpall of main: %v", err)
	}
	bpg := env.Postgres.CreateStart("before")
	if err := pgdump.Compare(dumpAll(t, bpg), wantBefore).Err(); err != nil {
		t.Errorf("after the loss of the page server's directory: pg_dumpall of branch before: %v", err)
	}
	bpg.Destroy()

	// SIGKILL while the compute runs: what was not uploaded is WAL the
	// safekeepers still have.
	conn = pg.Connect()
	exec1(t, conn, "INSERT INTO acct SELECT g, g, md5(g::text) FROM generate_series(20001, 30000) g")
	exec1(t, conn, "DELETE FROM acct WHERE id % 11 = 0")
	want = dumpAll(t, pg)
	conn.Close(t.Context())
	env.Zenith("pageserver", "stop", "--immediate")
	wipePageserver(t, env)
	env.Zenith("pageserver", "start")
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after a SIGKILL and the loss of the page server's directory: pg_dumpall of main: %v", err)
	}
	if out := env.Zenith("branch", "list"); !strings.Contains(out, "before") {
		t.Errorf("zenith branch list after the losses:\n%s\nwant branch before", out)
	}
}

// wipePageserver deletes everything in the page server's directory but
// its config file.
func wipePageserver(t *testing.T, env *zenithtest.Env) {
	t.Helper()
	dir := filepath.Join(env.RepoDir, "pageserver")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == pageserver.ConfigFileName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("page server directory after the wipe: %d entries, want only %s", len(entries), pageserver.ConfigFileName)
	}
}
