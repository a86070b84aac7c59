package control_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/httpapi"
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
	if idx, _ := filepath.Glob(filepath.Join(env.RepoDir, "remote_storage", "tenants", "*", "timelines", "*", "index.json-*")); len(idx) != 2 {
		t.Errorf("timeline indexes in the repository's remote storage: %v, want main's and before's, of the last generation", idx)
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
	s3DownThenDiskLoss(t, env, srv)
	if _, err := os.Stat(filepath.Join(env.RepoDir, "remote_storage")); err == nil {
		t.Errorf("remote_storage directory in the repository: the layers went there, not to S3")
	}
	if idx, _ := filepath.Glob(filepath.Join(srv.Dir, "zenith", "layers", "tenants", "*", "timelines", "*", "index.json-*")); len(idx) != 2 {
		t.Errorf("timeline indexes in the S3 bucket: %v, want main's and before's, of the last generation", idx)
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
	// The re-attach told the page server where the running compute's WAL
	// comes from (its local record of that was lost): the clean stop
	// finds the shutdown checkpoint there at once.
	if _, errOut, err := env.Run("pg", "stop", "main", "--destroy"); err != nil || strings.Contains(errOut, "rebuilds the data directory") {
		t.Errorf("zenith pg stop main --destroy after the page server re-attached: %v\n%s", err, errOut)
	}
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after a SIGKILL and the loss of the page server's directory: pg_dumpall of main: %v", err)
	}
	if out := env.Zenith("branch", "list"); !strings.Contains(out, "before") {
		t.Errorf("zenith branch list after the losses:\n%s\nwant branch before", out)
	}
	pg.Destroy()
}

// s3DownThenDiskLoss stops the S3 server while the page server flushes
// layers (a 1 MiB checkpoint distance) that it then cannot upload, so its
// disk-consistent LSN runs ahead of its remote-consistent one by several
// WAL segments; then kills the page server and deletes its directory, and
// starts S3 again. The safekeepers kept the WAL above the
// remote-consistent LSN (not only above the disk-consistent one), so the
// restored page server catches up and nothing committed is lost.
func s3DownThenDiskLoss(t *testing.T, env *zenithtest.Env, srv *s3test.Server) {
	t.Helper()
	conf := filepath.Join(env.RepoDir, "pageserver", pageserver.ConfigFileName)
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	b = regexp.MustCompile(`(?m)^checkpoint_distance = .*$`).ReplaceAll(b, []byte("checkpoint_distance = 1048576"))
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := pageserver.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	env.Zenith("pageserver", "stop")
	env.Zenith("pageserver", "start")
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	srv.Stop()
	exec1(t, conn, "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 8) AS v FROM generate_series(1, 150000) g")
	want := dumpAll(t, pg)
	var tl httpapi.TimelineInfo
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		tl = mainTimeline(t, env, cfg.ListenHTTP)
		if tl.DiskConsistentLSN > tl.RemoteConsistentLSN+2*16<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with S3 down, the page server's disk-consistent LSN did not get 2 segments ahead of its remote-consistent LSN: %+v", tl)
		}
	}
	t.Logf("S3 down: disk-consistent %v, remote-consistent %v", tl.DiskConsistentLSN, tl.RemoteConsistentLSN)
	// Time for the safekeeper's WAL removal, which runs every few
	// seconds, to remove what it would.
	time.Sleep(5 * time.Second)
	conn.Close(t.Context())
	env.Zenith("pageserver", "stop", "--immediate")
	wipePageserver(t, env)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	env.Zenith("pageserver", "start")
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after uploads failed with S3 down and the page server's directory was lost: pg_dumpall of main: %v", err)
	}
	pg.Destroy()
}

// mainTimeline asks the page server's HTTP API for branch main's
// timeline.
func mainTimeline(t *testing.T, env *zenithtest.Env, httpAddr string) httpapi.TimelineInfo {
	t.Helper()
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var tenants []struct {
		ID string `json:"tenant_id"`
	}
	get("/v1/tenant", &tenants)
	for _, tn := range tenants {
		var tls []httpapi.TimelineInfo
		get("/v1/tenant/"+tn.ID+"/timeline", &tls)
		for _, tl := range tls {
			if tl.Branch == "main" {
				return tl
			}
		}
	}
	t.Fatalf("the page server at %s has no branch main", httpAddr)
	return httpapi.TimelineInfo{}
}

// wipePageserver deletes everything in the page server's directory but
// its config file.
func wipePageserver(t *testing.T, env *zenithtest.Env) {
	t.Helper()
	if err := wipePageserverDir(env); err != nil {
		t.Fatal(err)
	}
}

// wipePageserverDir is wipePageserver for any goroutine.
func wipePageserverDir(env *zenithtest.Env) error {
	dir := filepath.Join(env.RepoDir, "pageserver")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == pageserver.ConfigFileName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		return fmt.Errorf("page server directory after the wipe: %d entries, want only %s", len(entries), pageserver.ConfigFileName)
	}
	return nil
}

// TestPageserverDiskLossUnderPgbench: three safekeepers, pgbench TPC-B
// running; a third of the way through, the page server is killed with
// SIGKILL and its whole directory deleted, and a fresh page server on the
// same remote storage attaches the tenant (zenith pageserver start
// re-attaches what the control plane lists) while pgbench goes on. A
// compute re-created afterwards has exactly one pgbench_history row per
// transaction pgbench reported. Once with the repository's local remote
// storage directory, once on a real S3 server (versitygw).
// PGBENCH_SECONDS (default 12) sets the run's length.
func TestPageserverDiskLossUnderPgbench(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the zenith binary, pgbench and versitygw; skipped in -short mode")
	}
	seconds := envSeconds(t, "PGBENCH_SECONDS", 12)
	for _, remote := range []string{"local", "s3"} {
		t.Run(remote, func(t *testing.T) {
			opts := &zenithtest.Options{Safekeepers: 3}
			if remote == "s3" {
				srv := s3test.Start(t, "zenith")
				opts.Environ, opts.MoreInitArgs = srv.Env(), []string{"--remote-storage", "s3://zenith/layers"}
			}
			env := zenithtest.New(t, opts)
			pg := env.Postgres.CreateStart("main")
			pgbench(t, pg.ConnString, "-i", "-s", "1", "-q")
			lost := make(chan error, 1)
			go func() {
				lost <- func() error {
					time.Sleep(time.Duration(seconds) * time.Second / 3)
					if _, errOut, err := env.Run("pageserver", "stop", "--immediate"); err != nil {
						return fmt.Errorf("zenith pageserver stop --immediate: %v\n%s", err, errOut)
					}
					if err := wipePageserverDir(env); err != nil {
						return err
					}
					if _, errOut, err := env.Run("pageserver", "start"); err != nil || !strings.Contains(errOut, "re-attached tenant") {
						return fmt.Errorf("zenith pageserver start after the disk loss: %v\n%s", err, errOut)
					}
					return nil
				}()
			}()
			r := pgbench(t, pg.ConnString, "-T", strconv.Itoa(seconds), "-c", "4", "-P", "4")
			if err := <-lost; err != nil {
				t.Fatal(err)
			}
			t.Logf("pgbench with the page server's directory lost at %d s:\n%s", seconds/3, r.Output)
			if r.Processed == 0 || r.Failed > 0 {
				t.Fatalf("pgbench: %d transactions, %d failed; want some, none failed", r.Processed, r.Failed)
			}
			pg.Destroy()
			pg = env.Postgres.CreateStart("main")
			if got := count(t, pg.Connect(), "pgbench_history"); got != r.Processed {
				t.Errorf("re-created compute after the disk loss: pgbench_history has %d rows, pgbench reported %d transactions", got, r.Processed)
			}
		})
	}
}
