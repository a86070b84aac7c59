package control_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
)

// importScaleEnv sets the pgbench scale of TestImport's stock cluster
// (default 1, 15 MiB); 70 makes the 1 GiB database of issue 17.
const importScaleEnv = "ZENITH_IMPORT_SCALE"

var importedTenant = regexp.MustCompile(`of tenant ([0-9a-f]{32}) at `)

// tablespaceLocation matches the location in pg_dumpall's CREATE
// TABLESPACE.
var tablespaceLocation = regexp.MustCompile(`LOCATION '[^']*'`)

// TestImport brings a stock PostgreSQL 15 cluster holding pgbench's
// tables, a second database and a tablespace (with a table of the second
// database and a third database) into zenith: while it runs, through a
// connection string (pg_basebackup, recovered here), as a new tenant;
// from tar-format base backups of it (pg_basebackup -Ft, gzip and lz4);
// and after a clean stop, from its data directory (with its WAL
// directory elsewhere, linked). A compute on each
// branch dumps exactly as the stock cluster did (but for the tablespace's
// location: a compute keeps it in its own directory). Bad sources are
// refused with messages that say what is wrong.
func TestImport(t *testing.T) {
	pgtest.SkipIfShort(t)
	ctx := context.Background()
	stock := pgtest.Start(t, map[string]string{"wal_level": "replica"})
	scale := "1"
	if s := os.Getenv(importScaleEnv); s != "" {
		scale = s
	}
	pgbench := stock.Command(ctx, "pgbench", "-i", "-s", scale, "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(stock.Port()), "-U", "postgres", "postgres")
	if out, err := pgbench.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	sconn, err := pgx.Connect(ctx, stock.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	exec1(t, sconn, "CREATE DATABASE other")
	loc := filepath.Join(os.TempDir(), fmt.Sprintf("zenith-import-ts-%d", os.Getpid()))
	if err := pgcluster.PrepareDir(loc, stock.User()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(loc) })
	exec1(t, sconn, "CREATE TABLESPACE ts LOCATION '"+loc+"'")
	exec1(t, sconn, "CREATE DATABASE in_ts TABLESPACE ts")
	sconn.Close(ctx)
	oconn, err := pgx.Connect(ctx, stock.ConnString("other"))
	if err != nil {
		t.Fatal(err)
	}
	exec1(t, oconn, "CREATE TABLE notes (id serial PRIMARY KEY, body text)")
	exec1(t, oconn, "INSERT INTO notes (body) SELECT repeat('n', g % 3000) FROM generate_series(1, 2000) g")
	exec1(t, oconn, "CREATE INDEX ON notes (length(body))")
	exec1(t, oconn, "CREATE TABLE notes_ts TABLESPACE ts AS SELECT * FROM notes WHERE id % 7 = 0")
	oconn.Close(ctx)
	tconn, err := pgx.Connect(ctx, stock.ConnString("in_ts"))
	if err != nil {
		t.Fatal(err)
	}
	exec1(t, tconn, "CREATE TABLE here AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 3000) g")
	tconn.Close(ctx)
	want, err := pgdump.DumpAll(ctx, pgdump.ClusterServer(stock))
	if err != nil {
		t.Fatal(err)
	}

	env := zenithtest.New(t, nil)

	// Bad sources.
	mustFail(t, env, "no such directory", "import", filepath.Join(env.Dir, "nowhere"))
	notPG := filepath.Join(env.Dir, "notpg")
	if err := os.MkdirAll(notPG, 0o755); err != nil {
		t.Fatal(err)
	}
	mustFail(t, env, "not a PostgreSQL data directory", "import", notPG)
	if err := os.WriteFile(filepath.Join(notPG, "PG_VERSION"), []byte("14\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustFail(t, env, "PostgreSQL 14 data directory; zenith imports PostgreSQL 15 only", "import", notPG)
	mustFail(t, env, "its server is running", "import", stock.DataDir())
	mustFail(t, env, "pg_basebackup from", "import", "host=127.0.0.1 port=1 user=postgres")
	if out := env.Zenith("tenant", "list"); strings.Count(out, "main") != 1 {
		t.Errorf("a failed import into a new tenant left a tenant behind:\n%s", out)
	}

	// A running server, into a new tenant.
	connStr := "host=127.0.0.1 port=" + strconv.Itoa(stock.Port()) + " user=postgres"
	out := env.Zenith("import", connStr, "--new-tenant", "--branch", "live")
	t.Logf("zenith import %q --new-tenant --branch live:\n%s", connStr, out)
	m := importedTenant.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("zenith import printed no tenant:\n%s", out)
	}
	live := env.Postgres.CreateStart("live", "--tenant", m[1])
	checkDump(t, live, want, "imported from a running server")

	// Tar-format base backups of it (pg_basebackup -Ft), compressed two
	// ways; one with an archive of a tablespace it does not have is
	// refused.
	for _, compress := range []string{"gzip", "client-lz4"} {
		backup := filepath.Join(env.Dir, "tar-"+compress)
		if err := pgcluster.PrepareDir(backup, stock.User()); err != nil {
			t.Fatal(err)
		}
		bb := stock.Command(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(stock.Port()), "-U", "postgres",
			"-D", backup, "-Ft", "-X", "stream", "--compress", compress, "-c", "fast")
		if out, err := bb.CombinedOutput(); err != nil {
			t.Fatalf("pg_basebackup -Ft --compress %s: %v\n%s", compress, err, out)
		}
		names, _ := filepath.Glob(filepath.Join(backup, "*"))
		t.Logf("pg_basebackup -Ft --compress %s wrote %v", compress, names)
		branch := "tar-" + strings.TrimPrefix(compress, "client-")
		env.Zenith("import", backup, "--branch", branch)
		pg := env.Postgres.CreateStart(branch)
		checkDump(t, pg, want, "imported from a tar-format base backup ("+compress+")")
		pg.Destroy()
	}
	extra := filepath.Join(env.Dir, "tar-gzip")
	if err := os.WriteFile(filepath.Join(extra, "99999.tar"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustFail(t, env, "99999.tar is the archive of a tablespace the base archive's tablespace_map does not list", "import", extra, "--branch", "extra")

	// The same cluster, stopped, from its directory, whose WAL is
	// elsewhere (as initdb --waldir leaves it).
	if err := stock.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	walDir := loc + "-wal"
	t.Cleanup(func() { os.RemoveAll(walDir) })
	if err := os.Rename(filepath.Join(stock.DataDir(), "pg_wal"), walDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(walDir, filepath.Join(stock.DataDir(), "pg_wal")); err != nil {
		t.Fatal(err)
	}
	env.Zenith("import", stock.DataDir(), "--branch", "stopped")
	stopped := env.Postgres.CreateStart("stopped")
	checkDump(t, stopped, want, "imported from a stopped data directory")
	conn := stopped.Connect()
	exec1(t, conn, "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid < 100")
	mustFail(t, env, "exists", "import", stock.DataDir(), "--branch", "stopped")
}

// checkDump compares pg_dumpall of compute pg with want.
func checkDump(t *testing.T, pg *zenithtest.Postgres, want, what string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(pg.ConnString)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := pgcluster.FindBinDir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgdump.DumpAll(ctx, pgdump.Server{Host: cfg.Host, Port: int(cfg.Port), User: cfg.User, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	// A tablespace's location on a compute is in the node's directory.
	got, want = tablespaceLocation.ReplaceAllString(got, "LOCATION '...'"), tablespaceLocation.ReplaceAllString(want, "LOCATION '...'")
	if err := pgdump.Compare(got, want).Err(); err != nil {
		t.Errorf("%s: pg_dumpall differs from the stock cluster's: %v\nfirst difference: %s", what, err, pgdump.FirstDifference(got, want))
	}
}

// TestImportKilled: the page server is killed (SIGKILL) in the middle of
// an import, after the import's timeline exists and before its branch is
// named. At the next start the half-imported timeline is gone (no files,
// no branch), and the same import then succeeds.
func TestImportKilled(t *testing.T) {
	pgtest.SkipIfShort(t)
	ctx := context.Background()
	stock := pgtest.Start(t, nil)
	pgbench := stock.Command(ctx, "pgbench", "-i", "-s", "8", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(stock.Port()), "-U", "postgres", "postgres")
	if out, err := pgbench.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	want, err := pgdump.DumpAll(ctx, pgdump.ClusterServer(stock))
	if err != nil {
		t.Fatal(err)
	}
	if err := stock.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	env := newSKEnv(t, 0)
	tenantDir := filepath.Join(env.RepoDir, "pageserver", "tenants", env.cfg.DefaultTenant.String())
	timelines := func() int {
		entries, err := os.ReadDir(filepath.Join(tenantDir, "timelines"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Logf("timeline directory %s", e.Name())
		}
		return len(entries)
	}
	before := timelines()

	cmd := exec.Command(env.Bin, "import", stock.DataDir(), "--branch", "big")
	cmd.Env = append(os.Environ(), "ZENITH_REPO_DIR="+env.RepoDir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		// The import marker, then the timeline it names.
		m, _ := filepath.Glob(filepath.Join(tenantDir, "importing-*"))
		if len(m) > 0 && !strings.HasSuffix(m[0], ".tmp") {
			tid := strings.TrimPrefix(filepath.Base(m[0]), "importing-")
			if _, err := os.Stat(filepath.Join(tenantDir, "timelines", tid)); err == nil {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("zenith import ended (err %v) before the test saw its timeline being imported:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no import in progress after 3 minutes:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed, err := env.killPageserver()
	mustKill(t, "the page server", killed, err)
	if err := <-exited; err == nil {
		t.Fatalf("zenith import succeeded although the page server was killed:\n%s", out.String())
	}
	if got := timelines(); got != before+1 {
		t.Fatalf("the killed import left %d timelines, want the half-imported one next to the %d before", got, before)
	}

	env.Zenith("start")
	if got := timelines(); got != before {
		t.Errorf("after a restart: %d timelines, want the %d before the killed import", got, before)
	}
	if m, _ := filepath.Glob(filepath.Join(tenantDir, "importing-*")); len(m) != 0 {
		t.Errorf("after a restart the import markers %v are left", m)
	}
	if list := env.Zenith("branch", "list"); strings.Contains(list, "big") {
		t.Errorf("after a restart the killed import's branch is listed:\n%s", list)
	}
	env.Zenith("import", stock.DataDir(), "--branch", "big")
	checkDump(t, env.Postgres.CreateStart("big"), want, "imported again after a killed import")
}
