package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
)

// skipUnlessFUSE skips a test of lazy mode where zenith cannot mount
// FUSE (not root, no /dev/fuse): there it is eager, which other tests
// cover.
func skipUnlessFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lazy mode mounts FUSE as root")
	}
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		t.Skipf("no FUSE here: %v", err)
	} else {
		f.Close()
	}
}

// listedNode is what these tests read of pg list --json.
type listedNode struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Mode      string `json:"mode"`
	DiskBytes int64  `json:"disk_bytes"`
}

func listNode(t *testing.T, env *zenithtest.Env, name string) listedNode {
	t.Helper()
	var rows []listedNode
	if err := json.Unmarshal([]byte(env.Zenith("pg", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("pg list has no node %s", name)
	return listedNode{}
}

// dumpServer is the pgdump.Server of a compute node.
func dumpServer(t *testing.T, pg *zenithtest.Postgres) pgdump.Server {
	t.Helper()
	u, err := url.Parse(pg.ConnString)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return pgdump.Server{Host: u.Hostname(), Port: port, User: u.User.Username(), BinDir: pgcluster.DefaultBinDir}
}

// dumpAndCheck runs pg_amcheck on a compute (which installs amcheck
// where it is missing, so every dump has it) and returns its pg_dumpall.
func dumpAndCheck(ctx context.Context, t *testing.T, what string, pg *zenithtest.Postgres) string {
	t.Helper()
	s := dumpServer(t, pg)
	if err := pgdump.Amcheck(ctx, s); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	d, err := pgdump.DumpAll(ctx, s)
	if err != nil {
		t.Fatalf("pg_dumpall of %s: %v", what, err)
	}
	return d
}

// workloadArgs are pg start's -c flags for the mixed workload's settings.
func workloadArgs() []string {
	var args []string
	for k, v := range workload.Settings() {
		args = append(args, "-c", k+"="+v)
	}
	return args
}

// TestLazyCompute runs the mixed workload on an eager compute, then
// starts a lazy compute on the branch: its pg_dumpall equals the live
// one's and amcheck is clean. Writes on the lazy compute then reach the
// page server: an eager compute started after it has the same dump.
// The lazy node's disk holds only what it read or wrote.
func TestLazyCompute(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)

	writer := env.Postgres.CreateStart("main", append([]string{"--eager"}, workloadArgs()...)...)
	if got := listNode(t, env, "main").Mode; got != "eager" {
		t.Fatalf("pg start --eager made a %s node", got)
	}
	// pg_amcheck --install-missing says NOTICE where amcheck exists
	// already, which pgdump.Amcheck takes for a finding (and its
	// environment drops PGOPTIONS): the setting is in the catalog, so
	// every compute of the branch has it.
	if _, err := writer.Connect().Exec(ctx, "ALTER ROLE postgres SET client_min_messages = warning"); err != nil {
		t.Fatal(err)
	}
	if _, err := workload.Run(ctx, writer.ConnString+"?sslmode=disable", workload.Options{Seed: 7, Scale: 0.3}); err != nil {
		t.Fatalf("workload: %v", err)
	}
	live := dumpAndCheck(ctx, t, "the eager compute", writer)
	writer.Stop()
	eagerDisk := listNode(t, env, "main").DiskBytes
	eagerRels := relationBytes(t, env, "main", "pgdata")
	if eagerRels == 0 {
		t.Fatal("the eager node holds no relation data: the workload made none?")
	}

	// Without the prewarm, which would start reading the relations a
	// second after PostgreSQL is ready, before a slow machine has
	// measured what the start itself brought (TestLazyPrewarm tests it).
	lazy := createLazyCold(t, env, "lazy", workloadArgs()...)
	if n := listNode(t, env, "lazy"); n.Mode != "lazy" || n.Status != "running" {
		t.Fatalf("pg start made a %s node, %s; want lazy, running", n.Mode, n.Status)
	}
	if kb := mountReadAheadKB(t, env, "lazy"); kb <= 128 {
		t.Errorf("the lazy mount's read-ahead window is %d KiB, the kernel's default for FUSE: a sequential scan reaches the FUSE server 16 blocks at a time", kb)
	}
	lazyStartDisk := listNode(t, env, "lazy").DiskBytes
	lazyStartRels := relationBytes(t, env, "lazy", filepath.Join("lazy", "pgdata"))
	if d := dumpAndCheck(ctx, t, "the lazy compute", lazy); pgdump.Compare(d, live).Err() != nil {
		t.Fatalf("lazy compute: %v", pgdump.Compare(d, live).Err())
	}
	t.Logf("disk: eager node %d bytes (%d of user relations); lazy node %d at start (%d of user relations), %d after pg_dumpall and amcheck",
		eagerDisk, eagerRels, lazyStartDisk, lazyStartRels, listNode(t, env, "lazy").DiskBytes)
	// Only the user relations' bytes tell: the rest of a node's disk is
	// its WAL (the eager node keeps all it wrote, wal_keep_size) and the
	// catalogs, which the lazy node fetches as its backends read them, so
	// how much of them it holds when pg list looks depends on timing. At
	// start it has read a few blocks of catalogs rewritten with new file
	// numbers (VACUUM FULL pg_class), nothing else: a copy is all.
	if lazyStartRels >= eagerRels/4 {
		t.Errorf("the lazy node holds %d bytes of user relations at start, the eager one %d: relation files were copied", lazyStartRels, eagerRels)
	}

	// Writes through the mount: new relations (local files), updates of
	// fetched blocks (the overlay), truncations, a rewrite.
	conn := lazy.Connect()
	for _, sql := range []string{
		"CREATE TABLE lazy_new AS SELECT g AS id, repeat('n', 50) AS pad FROM generate_series(1, 50000) g",
		"CREATE INDEX ON lazy_new (id)",
		// Thousands of blocks, each one the relation grew by: with the
		// kernel's writeback cache none costs a GETATTR round trip to
		// the FUSE server (see below). ANALYZE prefetches its blocks
		// (fadvise), from the kernel's cache.
		"CREATE TABLE lazy_prefetched AS SELECT g AS id, repeat('p', 100) AS pad FROM generate_series(1, 300000) g",
		"ANALYZE lazy_prefetched",
		"UPDATE lazy_new SET pad = 'u' WHERE id % 3 = 0",
		"DELETE FROM lazy_new WHERE id > 40000",
		"VACUUM lazy_new",
		"VACUUM FULL pg_class",
		// Every page of every table rewritten in place: fetched blocks
		// become the compute's own (the overlay).
		"VACUUM FREEZE",
		"ANALYZE",
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var grown int64
	if err := conn.QueryRow(ctx, "SELECT pg_relation_size('lazy_prefetched') / 8192").Scan(&grown); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	afterWrites := dumpAndCheck(ctx, t, "the lazy compute after its writes", lazy)
	lazy.Stop()
	if m := mountsIn(env.Dir); len(m) > 0 {
		t.Fatalf("pg stop left %v mounted", m)
	}
	// Without the writeback cache, every block a relation grows by is a
	// GETATTR (PostgreSQL's lseek to its end finds the size invalid
	// after the write): more than grown for this test's writes.
	if n := attrRequests(t, env, "lazy"); n > grown/4 {
		t.Errorf("the FUSE server served %d GETATTR requests while lazy_prefetched alone grew by %d blocks: the kernel asks for the size after writes (no writeback cache?)", n, grown)
	} else {
		t.Logf("%d GETATTR requests; lazy_prefetched grew by %d blocks", n, grown)
	}

	eager := env.Postgres.CreateStart("main", "--name", "check", "--eager")
	if d := dumpAndCheck(ctx, t, "an eager compute after the lazy one", eager); pgdump.Compare(d, afterWrites).Err() != nil {
		t.Fatalf("eager compute after the lazy one's writes: %v", pgdump.Compare(d, afterWrites).Err())
	}
	eager.Stop()
}

// mountReadAheadKB is the kernel's read-ahead window, in KiB, of the
// file system that compute node name's data directory is mounted from
// (the read_ahead_kb of its backing device info).
func mountReadAheadKB(t *testing.T, env *zenithtest.Env, name string) int {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", name, "pgdata"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("data directory of compute node %s: %v, %v", name, dirs, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dirs[0], &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Fatal(err)
	}
	kb, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return kb
}

// relationBytes is the disk space (allocated blocks) the files of user
// relations (file numbers from FirstNormalObjectId, 16384, on) take in
// the data directory at dir inside compute node name's directory.
func relationBytes(t *testing.T, env *zenithtest.Env, name, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", name, dir, "base", "*", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("relation files of compute node %s: %v, %v", name, len(files), err)
	}
	var total int64
	for _, f := range files {
		base := filepath.Base(f)
		digits := strings.IndexFunc(base, func(r rune) bool { return r < '0' || r > '9' })
		if digits == -1 {
			digits = len(base)
		}
		if n, err := strconv.Atoi(base[:digits]); err != nil || n < 16384 {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(f, &st); err != nil {
			t.Fatal(err)
		}
		total += st.Blocks * 512
	}
	return total
}

// TestLazyServerKilled kills a lazy node's FUSE server with SIGKILL under
// pgbench and writes: PostgreSQL fails, pg list says crashed, pg start
// cleans up and starts again, and every commit acknowledged before the
// kill is there; nothing stays mounted, no process of the node is left.
func TestLazyServerKilled(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)
	pg := env.Postgres.CreateStart("main")
	pgbench(t, pg.ConnString, "-i", "-s", "1", "-q")
	conn := pg.Connect()
	if _, err := conn.Exec(ctx, "CREATE TABLE acked (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	acked := 0
	for i := 1; i <= 200; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO acked VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
		acked = i
	}
	pidFiles, _ := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", "main", "fuse.pid"))
	if len(pidFiles) != 1 {
		t.Fatalf("fuse.pid files: %v", pidFiles)
	}
	b, err := os.ReadFile(pidFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid < 1 {
		t.Fatalf("fuse.pid: %q", b)
	}
	// pgbench runs until PostgreSQL fails under it; how it ends is not
	// the point, only that the server dies under load.
	bench := exec.CommandContext(ctx, filepath.Join(pgcluster.DefaultBinDir, "pgbench"), "-T", "60", "-c", "2", pg.ConnString)
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()
	// Keep writing while the server dies: some inserts fail, those that
	// succeed were acknowledged and must survive.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := acked + 1; i < acked+100000; i++ {
			if _, err := conn.Exec(ctx, "INSERT INTO acked VALUES ($1)", i); err != nil {
				return
			}
			acked = i
		}
	}()
	time.Sleep(time.Second)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	select {
	case err := <-benchDone:
		t.Logf("pgbench, its server's FUSE server killed: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("pgbench still runs a minute after the FUSE server's death")
	}
	if st := listNode(t, env, "main").Status; st != "crashed" {
		t.Errorf("after its FUSE server died, pg list says %s, want crashed", st)
	}
	pg = env.Postgres.CreateStart("main")
	if m := listNode(t, env, "main"); m.Mode != "lazy" || m.Status != "running" {
		t.Fatalf("restarted node: %s, %s; want lazy, running", m.Mode, m.Status)
	}
	conn = pg.Connect()
	var n, max int
	if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(max(id), 0) FROM acked").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if max < acked || n != max {
		t.Fatalf("after the crash: %d rows up to %d, want every acknowledged one up to %d", n, max, acked)
	}
	t.Logf("%d rows acknowledged before the kill, %d there after the restart", acked, n)
	pg.Stop()
	checkNodeGone(t, env, "main")
}

// attrRequests is the number of GETATTR requests the FUSE server of
// node name served, from its log's last "unmounted" line.
func attrRequests(t *testing.T, env *zenithtest.Env, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodeDir(t, filepath.Join(env.RepoDir, "pgdatadirs", "tenants"), name), "fuse.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`getattr_requests\W+(\d+)`).FindAllSubmatch(b, -1)
	if len(m) == 0 {
		t.Fatalf("the FUSE server's log has no getattr_requests:\n%s", b)
	}
	n, _ := strconv.ParseInt(string(m[len(m)-1][1]), 10, 64)
	return n
}

// mountsIn returns the mount points inside dir.
func mountsIn(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// TestLazyPageserverDown kills the page server under a lazy compute:
// reading a block not fetched yet is an ERROR (EIO), not a PANIC, and
// once the page server is back the same query answers, with the data.
func TestLazyPageserverDown(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)
	loader := env.Postgres.CreateStart("main", "--eager")
	for _, table := range []string{"big", "big2"} {
		if _, err := loader.Connect().Exec(ctx, "CREATE TABLE "+table+" AS SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 100000) g"); err != nil {
			t.Fatal(err)
		}
	}
	loader.Stop()
	pg := createLazyCold(t, env, "lazy")
	conn := pg.Connect()
	env.Zenith("pageserver", "stop", "--immediate")
	var n int
	err := conn.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "Input/output error") {
		t.Fatalf("count(*) with the page server down: %d, %v; want an I/O error", n, err)
	}
	t.Logf("with the page server down: %v", err)
	env.Zenith("pageserver", "start")
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&n); err != nil || n != 100000 {
		t.Fatalf("count(*) once the page server is back: %d, %v; want 100000", n, err)
	}
	if st := listNode(t, env, "lazy").Status; st != "running" {
		t.Errorf("the lazy node is %s after the page server came back, want running", st)
	}
	// Restarted while nothing reads: the FUSE server's idle connections
	// died with it, and the next read must not fail on one.
	env.Zenith("pageserver", "stop", "--immediate")
	env.Zenith("pageserver", "start")
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM big2").Scan(&n); err != nil || n != 100000 {
		t.Fatalf("count(*) after a page server restart: %d, %v; want 100000", n, err)
	}
	conn.Close(ctx)
	pg.Stop()
	if m := mountsIn(env.Dir); len(m) > 0 {
		t.Fatalf("pg stop left %v mounted", m)
	}
}

// TestLazyFetchTimeout stops (SIGSTOP) the page server under a lazy
// compute: a read of a block not fetched yet fails with an I/O error
// once the fetch timeout passes, rather than hanging the backend, and
// the same query answers once the page server runs again (SIGCONT).
func TestLazyFetchTimeout(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)
	loader := env.Postgres.CreateStart("main", "--eager")
	if _, err := loader.Connect().Exec(ctx, "CREATE TABLE big AS SELECT g FROM generate_series(1, 100000) g"); err != nil {
		t.Fatal(err)
	}
	loader.Stop()
	// The test waits for the fetch timeout: a short one (node.toml's
	// lazy_fetch_timeout) rather than the default.
	env.Zenith("pg", "create", "main", "--name", "lazy")
	setNodeSetting(t, env, "lazy", "lazy_fetch_timeout", `"3s"`)
	setNodeSetting(t, env, "lazy", "lazy_prewarm_bytes", "-1")
	pg := env.Postgres.CreateStart("main", "--name", "lazy")
	conn := pg.Connect()
	b, err := os.ReadFile(filepath.Join(env.RepoDir, "pageserver.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		t.Fatalf("pageserver.pid: %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	start := time.Now()
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "Input/output error") {
		t.Fatalf("count(*) with the page server stopped: %d, %v; want an I/O error", n, err)
	}
	t.Logf("with the page server stopped, after %v: %v", time.Since(start).Round(time.Second), err)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&n); err != nil || n != 100000 {
		t.Fatalf("count(*) once the page server runs again: %d, %v; want 100000", n, err)
	}
	conn.Close(ctx)
	pg.Stop()
	if m := mountsIn(env.Dir); len(m) > 0 {
		t.Fatalf("pg stop left %v mounted", m)
	}
}

// setNodeSetting sets key to value (TOML) in the node.toml of the default
// tenant's compute node name.
// createLazyCold creates lazy node name on main with no prewarm (node.toml's
// lazy_prewarm_bytes -1), so that its blocks are fetched only when the
// test's queries read them, and starts it with args.
func createLazyCold(t *testing.T, env *zenithtest.Env, name string, args ...string) *zenithtest.Postgres {
	t.Helper()
	env.Zenith("pg", "create", "main", "--name", name)
	setNodeSetting(t, env, name, "lazy_prewarm_bytes", "-1")
	return env.Postgres.CreateStart("main", append([]string{"--name", name}, args...)...)
}

func setNodeSetting(t *testing.T, env *zenithtest.Env, name, key, value string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", name, "node.toml"))
	if err != nil || len(paths) != 1 {
		t.Fatalf("node.toml of compute node %s: %v, %v", name, paths, err)
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	line := key + " = " + value
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + ` = .*$`)
	if re.Match(b) {
		b = re.ReplaceAll(b, []byte(line))
	} else {
		b = append(b, []byte("\n"+line+"\n")...)
	}
	if err := os.WriteFile(paths[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
}
