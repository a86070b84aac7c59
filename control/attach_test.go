package control_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/safekeeper"
)

// TestTenantDetachAttach detaches the default tenant (everything goes to
// remote storage, nothing stays on the page server's disk) and attaches
// it again at a new generation: a re-created compute and a branch made
// before dump as they did before the detach. A running compute refuses
// the detach without --force; an unknown tenant's attach says so.
func TestTenantDetachAttach(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 1})
	tenant := defaultTenant(t, env)
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

	if _, errOut, err := env.Run("tenant", "detach", tenant); err == nil || !strings.Contains(errOut, "--force") {
		t.Errorf("tenant detach with a running compute: err %v, stderr %q; want a refusal naming --force", err, errOut)
	}
	pg.Stop()
	out := env.Zenith("tenant", "detach", tenant)
	if !strings.Contains(out, "detached tenant "+tenant) {
		t.Errorf("zenith tenant detach printed %q", out)
	}
	if out := env.Zenith("tenant", "list"); strings.Contains(out, tenant) {
		t.Errorf("zenith tenant list after detach still shows %s:\n%s", tenant, out)
	}
	if _, err := os.Stat(filepath.Join(env.RepoDir, "pageserver", "tenants", tenant)); !os.IsNotExist(err) {
		t.Errorf("the tenant's directory after detach: %v, want it gone", err)
	}
	if _, errOut, err := env.Run("tenant", "detach", tenant); err == nil || !strings.Contains(errOut, "does not hold tenant") {
		t.Errorf("second detach: err %v, stderr %q; want it to say the page server does not hold the tenant", err, errOut)
	}

	out = env.Zenith("tenant", "attach", tenant)
	if !strings.Contains(out, "attached tenant "+tenant+" at generation 2 (2 timelines)") {
		t.Errorf("zenith tenant attach printed %q, want generation 2 with 2 timelines", out)
	}
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after detach and attach: pg_dumpall of main: %v", err)
	}
	bpg := env.Postgres.CreateStart("before")
	if err := pgdump.Compare(dumpAll(t, bpg), wantBefore).Err(); err != nil {
		t.Errorf("after detach and attach: pg_dumpall of branch before: %v", err)
	}
	bpg.Destroy()
	pg.Destroy()

	// Attaching it again where it is attached takes a newer generation.
	if out := env.Zenith("tenant", "attach", tenant); !strings.Contains(out, "at generation 3") {
		t.Errorf("attach of an attached tenant printed %q, want generation 3", out)
	}
	unknown := "0123456789abcdef0123456789abcdef"
	if _, errOut, err := env.Run("tenant", "attach", unknown); err == nil || !strings.Contains(errOut, "not in the page server's remote storage") {
		t.Errorf("attach of an unknown tenant: err %v, stderr %q; want it to say the tenant is not in remote storage", err, errOut)
	}
	// The unknown tenant is not re-attached at the next start.
	env.Zenith("pageserver", "stop")
	if _, errOut, err := env.Run("pageserver", "start"); err != nil {
		t.Errorf("pageserver start after a failed attach: %v\n%s", err, errOut)
	}
}

// TestLayerDiskBudget runs the page server with a layer disk budget of
// one byte, so every layer file is evicted once uploaded: a tenant
// detached and attached again (the attach downloads indexes only; see
// repo's TestOnDemandLayers) serves a re-created compute that dumps as
// the live one did, its layers fetched from remote storage as reads need
// them, and evicted again.
func TestLayerDiskBudget(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 1})
	cfg := setPageserverConfig(t, env, map[string]string{"checkpoint_distance": "1048576", "layer_disk_budget": "1"})
	env.Zenith("pageserver", "stop")
	env.Zenith("pageserver", "start")
	tenant := defaultTenant(t, env)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 4) AS v FROM generate_series(1, 60000) g")
	exec1(t, conn, "CREATE INDEX big_v ON big (v)")
	want := dumpAll(t, pg)
	conn.Close(t.Context())
	pg.Stop()
	env.Zenith("tenant", "detach", tenant)
	fetched := metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total")
	env.Zenith("tenant", "attach", tenant)
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("with layers fetched on demand: pg_dumpall of main: %v", err)
	}
	if n := metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total"); n <= fetched {
		t.Errorf("layer fetches after the attach and a compute's start: %v, want more than the %v before", n, fetched)
	}
	for deadline := time.Now().Add(2 * time.Minute); metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total") == 0; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("no layer evicted with a disk budget of one byte")
		}
	}
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after evictions: pg_dumpall of main: %v", err)
	}
	pg.Destroy()
}

// setPageserverConfig sets top-level settings of the page server's
// config file (the page server reads them at its next start) and returns
// the config.
func setPageserverConfig(t *testing.T, env *zenithtest.Env, set map[string]string) pageserver.Config {
	t.Helper()
	conf := filepath.Join(env.RepoDir, "pageserver", pageserver.ConfigFileName)
	setConfig(t, conf, set)
	cfg, err := pageserver.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// metric reads one unlabelled metric from the page server's /metrics.
func metric(t testing.TB, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTwoPageserversFenced has two page servers that both believe they
// hold the default tenant: a copy of the page server's directory (the
// zombie, generation 1) runs next to the page server, which took
// generation 2. The zombie flushes, collects garbage, uploads (its
// objects carry generation 1) and deletes the tenant; none of it touches
// generation 2's objects, and the tenant detached and attached again
// (generation 3) dumps as it did before. The safekeeper learns the
// generation of both page servers' reports and lets only generation 2's
// decide which WAL it removes.
func TestTwoPageserversFenced(t *testing.T) {
	skenv := newSKEnv(t, 1)
	env := skenv.Env
	tenant := defaultTenant(t, env)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE acct (id int PRIMARY KEY, balance bigint, note text)")
	exec1(t, conn, "INSERT INTO acct SELECT g, g * 10, md5(g::text) FROM generate_series(1, 20000) g")
	want := dumpAll(t, pg)
	conn.Close(t.Context())
	pg.Stop()

	env.Zenith("pageserver", "stop")
	zdir := filepath.Join(env.Dir, "zombie")
	if out, err := exec.Command("cp", "-a", filepath.Join(env.RepoDir, "pageserver"), zdir).CombinedOutput(); err != nil {
		t.Fatalf("copy the page server's directory: %v\n%s", err, out)
	}
	env.Zenith("pageserver", "start")
	if out := env.Zenith("tenant", "attach", tenant); !strings.Contains(out, "at generation 2") {
		t.Fatalf("zenith tenant attach printed %q, want generation 2", out)
	}
	remoteDir := filepath.Join(env.RepoDir, "remote_storage", "tenants", tenant)
	waitForObject(t, remoteDir, "index.json-00000002")

	zaddr := startZombie(t, env, zdir)
	zconn := "host=" + strings.Split(zaddr, ":")[0] + " port=" + strings.Split(zaddr, ":")[1] + " user=zenith dbname=zenith"
	if err := pageserviceExec(zconn, "gc "+tenant); err != nil {
		t.Fatalf("gc on the zombie: %v", err)
	}
	waitForObject(t, remoteDir, "index.json-00000001")
	waitStaleReports(t, skenv, 1, 2)
	if err := pageserviceExec(zconn, "tenant_delete "+tenant); err != nil {
		t.Fatalf("tenant_delete on the zombie: %v", err)
	}

	env.Zenith("tenant", "detach", tenant)
	if out := env.Zenith("tenant", "attach", tenant); !strings.Contains(out, "at generation 3") {
		t.Errorf("zenith tenant attach printed %q, want generation 3", out)
	}
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after a zombie page server's uploads and delete: pg_dumpall of main: %v", err)
	}
	pg.Destroy()
}

// startZombie runs a second page server on directory dir, on ports of its
// own, until the test ends; it returns its page service's address.
func startZombie(t *testing.T, env *zenithtest.Env, dir string) string {
	t.Helper()
	addr := zenithtest.FreeAddr(t)
	cmd := exec.Command(env.Bin, "pageserver", "run", "-D", dir, "--listen-pg", addr, "--listen-http", zenithtest.FreeAddr(t))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("zombie page server's log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the zombie page server does not listen on %s", addr)
		}
	}
}

// waitForObject waits until a file named name is somewhere under dir.
func waitForObject(t *testing.T, dir, name string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		found := false
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == name {
				found = true
			}
			return nil
		})
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s under %s", name, dir)
		}
	}
}

// waitStaleReports waits until safekeeper n has ignored a report of a
// page server of a generation older than gen, the one it holds now.
func waitStaleReports(t *testing.T, e *skEnv, n int, gen uint32) {
	t.Helper()
	var st safekeeper.TimelineState
	var stale float64
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if st, err = e.skTimeline(n); err == nil {
			var text string
			text, err = httpText("http://" + e.skHTTP(n) + "/metrics")
			stale, _ = metricValue(text, fmt.Sprintf("safekeeper_stale_pageserver_reports_total{tenant_id=%q,timeline_id=%q}", st.Tenant, st.Timeline))
		}
		if err == nil && st.PageserverGeneration == gen && stale > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("safekeeper %d: page server generation %d, %v stale reports ignored (%v); want generation %d and the zombie's reports ignored",
				n, st.PageserverGeneration, stale, err, gen)
		}
	}
}

// httpText GETs url and returns its body.
func httpText(url string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
