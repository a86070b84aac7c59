package control_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// mountTmpfs moves dir's contents onto a new tmpfs of sizeMiB mounted at
// dir (as root), so that a test can fill a process's directory. The
// mount goes when the test ends, after stop (which must end every process
// using it) has run, even if the test failed.
func mountTmpfs(t *testing.T, dir string, sizeMiB int, stop func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: mounting a tmpfs of a given size needs root; run as root to test a full disk")
	}
	mountOver(t, dir, stop, "-t", "tmpfs", "-o", "size="+strconv.Itoa(sizeMiB)+"m,mode=0755", "tmpfs")
}

// mountOver moves dir's contents onto the file system mount (as root)
// mounts at dir with args, and back. When the test ends, even if it
// failed, stop (which must end every process using it) runs, then it is
// unmounted (lazily if something still holds it). A mount that fails
// skips the test.
func mountOver(t *testing.T, dir string, stop func(), args ...string) {
	t.Helper()
	seed := dir + ".seed"
	if err := os.Rename(dir, seed); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", append(args, dir)...).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount here (mount %s): %v: %s", strings.Join(args, " "), err, out)
	}
	t.Cleanup(func() {
		stop()
		// The page server's redo processes end a moment after it.
		var err error
		for range 20 {
			if err = exec.Command("umount", dir).Run(); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		// Something still holds it: detach it now, it goes when that
		// process does.
		out, err := exec.Command("umount", "-l", dir).CombinedOutput()
		t.Logf("umount %s was busy; lazy unmount: %v %s", dir, err, out)
	})
	if out, err := exec.Command("cp", "-a", seed+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy %s onto the mount: %v: %s", seed, err, out)
	}
	if err := os.RemoveAll(seed); err != nil {
		t.Fatal(err)
	}
}

// fillDisk writes a file in dir until its file system is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ballast")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Whatever is left, smaller than a MiB.
	for _, n := range []int{64 << 10, 4 << 10, 512} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return p
}

// waitFor polls cond every second until it holds or the time is up.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(time.Second) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

// startAckedWorkload starts a compute on main and a client committing
// numbered rows into its table acked, recording which commits were
// acknowledged, and returns once 100 were; the client stops with the test.
func startAckedWorkload(t *testing.T, env *zenithtest.Env) *ackedWriter {
	t.Helper()
	return startAckedWorkloadOn(t, env.Postgres.CreateStart("main"))
}

// startAckedWorkloadOn is startAckedWorkload on the running compute pg.
func startAckedWorkloadOn(t *testing.T, pg *zenithtest.Postgres) *ackedWriter {
	t.Helper()
	admin := pg.Connect()
	exec1(t, admin, "CREATE TABLE acked (id int PRIMARY KEY, pad text)")
	admin.Close(context.Background())
	w := startAckedWriter(pg.ConnString + "?sslmode=disable")
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
	})
	waitFor(t, "100 commits acknowledged before the disk fills", 3*time.Minute, func() bool { return w.count() >= 100 })
	return w
}

// TestPageserverDiskFull fills the page server's directory (a tmpfs of its
// own) while a client commits numbered rows and records which commits were
// acknowledged. Without safekeepers the page server is the compute's
// synchronous standby, so with its disk full commits must stop being
// acknowledged, while the page server keeps running (no crash loop) and
// says why in zenith status. Once space is freed commits go on by
// themselves; after a restart of the page server (its files must load: no
// corrupt file) a compute re-created from it has every acknowledged row.
func TestPageserverDiskFull(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{NoStart: true})
	psDir := filepath.Join(env.RepoDir, "pageserver")
	seedSize := duMiB(t, psDir)
	mountTmpfs(t, psDir, seedSize+96, func() { _, _, _ = env.Run("stop", "--immediate") })
	env.Zenith("start")
	w := startAckedWorkload(t, env)
	pid := pageserverPID(t, env)

	ballast, stalledAt := fillUntilStalled(t, env, w, psDir)
	if got := pageserverPID(t, env); got != pid {
		t.Errorf("page server pid %d, was %d: it restarted on a full disk", got, pid)
	}
	time.Sleep(10 * time.Second)
	if n := w.count(); n != stalledAt {
		t.Errorf("%d commits acknowledged with the page server's disk full", n-stalledAt)
	}

	freeAndResume(t, env, w, ballast, stalledAt, "DISK FULL")
	acked := w.finish(t)
	t.Logf("%d commits acknowledged, %d when they stopped on the full disk; %d failed (last: %v)", len(acked), stalledAt, w.errors, w.last)

	// A plain restart must find every file of the page server sound.
	env.Zenith("pg", "stop", "main", "--destroy", "--immediate")
	env.Zenith("pageserver", "stop")
	env.Zenith("pageserver", "start")
	pg := env.Postgres.CreateStart("main")
	checkAcked(t, pg.Connect(), acked)
}

// fillUntilStalled fills the page server's directory psDir (fillDisk) and
// waits until w's commits stop being acknowledged, as the page server
// can store neither WAL nor layers, and zenith status says DISK FULL. It
// returns the ballast file and how many commits were acknowledged.
func fillUntilStalled(t *testing.T, env *zenithtest.Env, w *ackedWriter, psDir string) (ballast string, stalledAt int) {
	t.Helper()
	ballast = fillDisk(t, psDir)
	var size int64
	if fi, err := os.Stat(ballast); err == nil {
		size = fi.Size()
	}
	t.Logf("filled %s with %d MiB; %d commits acknowledged", psDir, size>>20, w.count())
	waitFor(t, "commits to stop being acknowledged with the disk full", 3*time.Minute, func() bool {
		n := w.count()
		time.Sleep(5 * time.Second)
		stalledAt = w.count()
		return n == stalledAt
	})
	var status string
	waitFor(t, "zenith status to say the disk is full", time.Minute, func() bool {
		status = env.Zenith("status")
		return strings.Contains(status, "DISK FULL")
	})
	t.Logf("zenith status with the disk full:\n%s", status)
	return ballast, stalledAt
}

// freeAndResume removes ballast and waits until w's commits go on and
// zenith status names none of problems.
func freeAndResume(t *testing.T, env *zenithtest.Env, w *ackedWriter, ballast string, stalledAt int, problems ...string) {
	t.Helper()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "commits to go on after space is freed", 3*time.Minute, func() bool { return w.count() >= stalledAt+50 })
	waitFor(t, "zenith status to stop naming "+strings.Join(problems, " or "), 2*time.Minute, func() bool {
		s := env.Zenith("status")
		for _, p := range problems {
			if strings.Contains(s, p) {
				return false
			}
		}
		return true
	})
}

// checkAcked checks that every acknowledged row is in the table acked.
func checkAcked(t *testing.T, conn *pgx.Conn, acked []int) {
	t.Helper()
	rows, missing := missingAcked(t, conn, acked)
	t.Logf("re-created compute: %d rows, %d acknowledged", rows, len(acked))
	if len(missing) > 0 {
		t.Errorf("%d acknowledged commits lost, e.g. %v", len(missing), missing[:min(len(missing), 20)])
	}
}

// missingAcked reads the table acked: how many rows it has, and which of
// the acknowledged ids are not among them.
func missingAcked(t *testing.T, conn *pgx.Conn, acked []int) (rows int, missing []int) {
	t.Helper()
	r, err := conn.Query(context.Background(), "SELECT id FROM acked")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(r, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	present := make(map[int]bool, len(ids))
	for _, id := range ids {
		present[id] = true
	}
	for _, id := range acked {
		if !present[id] {
			missing = append(missing, id)
		}
	}
	return len(ids), missing
}

// duMiB is the size of dir's contents, in MiB, rounded up.
func duMiB(t *testing.T, dir string) int {
	t.Helper()
	var total int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return int(total>>20) + 1
}

// pageserverPID is the pid in the page server's pidfile.
func pageserverPID(t *testing.T, env *zenithtest.Env) int {
	t.Helper()
	out := env.Zenith("pageserver", "status")
	// "page server: running, pid N, ..."
	_, rest, ok := strings.Cut(out, "pid ")
	if !ok {
		t.Fatalf("zenith pageserver status: %q", out)
	}
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		n = 10*n + int(c-'0')
	}
	return n
}

// TestSafekeeperDiskFull fills one of three safekeepers' directories (a
// tmpfs of its own) while a client commits numbered rows: the other two
// are a quorum, so commits must go on, and the full one must keep running
// (no crash loop). Once space is freed it must catch up: with another
// safekeeper then stopped, commits still go on only if it holds the WAL
// again. A compute re-created at the end has every acknowledged row.
func TestSafekeeperDiskFull(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 3, NoStart: true})
	skDir := filepath.Join(env.RepoDir, "safekeepers", "sk3")
	if err := os.MkdirAll(skDir, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, skDir, duMiB(t, skDir)+48, func() { _, _, _ = env.Run("stop", "--immediate") })
	env.Zenith("start")
	w := startAckedWorkload(t, env)
	pidOf := func() string {
		b, _ := os.ReadFile(filepath.Join(env.RepoDir, "safekeeper-3.pid"))
		return strings.TrimSpace(string(b))
	}
	pid := pidOf()
	ballast := fillDisk(t, skDir)
	before := w.count()
	t.Logf("filled %s; %d commits acknowledged", skDir, before)
	// A quorum is left: commits go on. Enough of them to need more WAL
	// than the full safekeeper could store.
	waitFor(t, "commits to go on with one safekeeper's disk full", 3*time.Minute, func() bool { return w.count() >= before+300 })
	if got := pidOf(); got != pid {
		t.Errorf("safekeeper 3's pid is %s, was %s: it restarted on a full disk", got, pid)
	}
	var out string
	waitFor(t, "zenith status to say safekeeper 3's disk is full", time.Minute, func() bool {
		out = env.Zenith("status")
		_, sk3, _ := strings.Cut(out, "safekeeper 3:")
		return strings.Contains(sk3, "DISK FULL")
	})
	t.Logf("zenith status with safekeeper 3's disk full:\n%s", out)
	sk3HTTP := safekeeperHTTPAddr(t, env, 3)
	if v := metric(t, sk3HTTP, "safekeeper_disk_full"); v != 1 {
		t.Errorf("safekeeper 3's safekeeper_disk_full = %v with its disk full, want 1", v)
	}
	if v := metric(t, sk3HTTP, "safekeeper_disk_full_errors_total"); v < 1 {
		t.Errorf("safekeeper 3's safekeeper_disk_full_errors_total = %v with its disk full, want at least 1", v)
	}
	if log, err := os.ReadFile(filepath.Join(env.RepoDir, "safekeeper-3.log")); err == nil && !strings.Contains(string(log), "no space left on device") {
		t.Errorf("safekeeper 3's log does not say its disk is full")
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	// Safekeeper 3 must take WAL again: with safekeeper 1 stopped it is
	// needed for the quorum.
	time.Sleep(5 * time.Second)
	env.Zenith("safekeeper", "stop", "--id", "1")
	n := w.count()
	waitFor(t, "commits to go on with safekeeper 1 stopped and 3's space freed", 3*time.Minute, func() bool { return w.count() >= n+50 })
	if out := env.Zenith("status"); strings.Contains(out, "DISK FULL") {
		t.Errorf("zenith status still says a disk is full after space was freed and WAL written:\n%s", out)
	}
	if v := metric(t, sk3HTTP, "safekeeper_disk_full"); v != 0 {
		t.Errorf("safekeeper 3's safekeeper_disk_full = %v after space was freed and WAL written, want 0", v)
	}
	acked := w.finish(t)
	t.Logf("%d commits acknowledged; %d failed (last: %v)", len(acked), w.errors, w.last)
	env.Zenith("pg", "stop", "main", "--destroy", "--immediate")
	pg := env.Postgres.CreateStart("main")
	checkAcked(t, pg.Connect(), acked)
}

// safekeeperHTTPAddr is safekeeper n's HTTP address in env, whose
// safekeepers listen on consecutive ports from base_http_port.
func safekeeperHTTPAddr(t *testing.T, env *zenithtest.Env, n int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.RepoDir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^base_http_port = (\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("config.toml has no base_http_port:\n%s", b)
	}
	port, err := strconv.Atoi(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port+n-1)
}

// TestPageserverDiskFullPgbench fills the page server's directory (a
// tmpfs of its own) under pgbench and a client that records its
// acknowledged commits, without safekeepers. A third client writes
// records of a megabyte (logical messages), so that the WAL the compute
// streams meets the full disk in the middle of a record: the page
// server's WAL store must then cut that record's start off on a disk
// with no space for the cut (it copies the kept part of the segment). That used to stop the timeline's WAL receiver for good (commits
// then waited until the page server restarted). Now commits stall while
// the disk is full, the page server says so, and once space is freed
// they go on by themselves: no restart of anything. A compute re-created
// then (pg stop --destroy, pg start) has every acknowledged row, and as
// many pgbench history rows as the live one had.
func TestPageserverDiskFullPgbench(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{NoStart: true})
	psDir := filepath.Join(env.RepoDir, "pageserver")
	seedSize := duMiB(t, psDir)
	// 160 MiB for the WAL and layers, and 48 MiB for what the page
	// server's preallocated WAL store needs beyond its WAL: the unwritten
	// rest of its current segment, the spare segment, and a whole
	// segment for the copy a cut makes (walseg.Truncate). Without them
	// the space freed at the end could be less than a layer flush, the
	// cut and the spare need together, and commits waited for good.
	mountTmpfs(t, psDir, seedSize+160+48, func() { _, _, _ = env.Run("stop", "--immediate") })
	env.Zenith("start")
	pg := env.Postgres.CreateStart("main")
	w := startAckedWorkloadOn(t, pg)
	pgbench(t, pg.ConnString+"?sslmode=disable", "-i", "-s", "2", "-q")
	bench := startPgbench(t, pg.ConnString+"?sslmode=disable", "-c", "4", "-T", "3600", "-n")
	stopBig := bigRecords(t, pg.ConnString+"?sslmode=disable")
	pid := pageserverPID(t, env)
	time.Sleep(5 * time.Second)

	ballast, stalledAt := fillUntilStalled(t, env, w, psDir)
	// Long enough for the receiver to try again a few times.
	time.Sleep(15 * time.Second)
	if got := pageserverPID(t, env); got != pid {
		t.Errorf("page server pid %d, was %d: it restarted on a full disk", got, pid)
	}
	if n := w.count(); n != stalledAt {
		t.Errorf("%d commits acknowledged with the page server's disk full", n-stalledAt)
	}

	// The heavy writers stop before space is freed: at their rate (a
	// megabyte record every 100 ms besides pgbench) they would fill this
	// small file system again within seconds, before the page server's
	// layers could take the WAL it holds and let it trim its store.
	stopBig()
	bench.stop()
	freeAndResume(t, env, w, ballast, stalledAt, "DISK FULL", "WAL STORE FAILING")
	acked := w.finish(t)
	t.Logf("%d commits acknowledged, %d when they stopped on the full disk; %d failed (last: %v)", len(acked), stalledAt, w.errors, w.last)
	conn := pg.Connect()
	var history int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pgbench_history").Scan(&history); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())

	// The page server is not restarted: the re-created compute's data
	// comes from what it stored and ingested through it all.
	env.Zenith("pg", "stop", "main", "--destroy")
	pg = env.Postgres.CreateStart("main")
	conn = pg.Connect()
	checkAcked(t, conn, acked)
	var again int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pgbench_history").Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != history {
		t.Errorf("re-created compute: %d pgbench history rows, the live one had %d", again, history)
	}
}

// bigRecords commits a logical message of a megabyte, one WAL record
// that spans many pages, every 100 ms until the returned function is
// called (or the test ends); failed commits are retried.
func bigRecords(t *testing.T, connStr string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for ctx.Err() == nil {
			var err error
			if conn == nil {
				conn, err = pgx.Connect(ctx, connStr)
			}
			if err == nil {
				_, err = conn.Exec(ctx, "SELECT pg_logical_emit_message(true, 'zenith-test', repeat('x', 1000000))")
			}
			if err != nil && conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// runningPgbench is a pgbench started in the background.
type runningPgbench struct {
	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

// startPgbench starts pgbench against connStr; stop ends it.
func startPgbench(t *testing.T, connStr string, args ...string) *runningPgbench {
	t.Helper()
	bin, err := pgcluster.FindBinDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	b := &runningPgbench{done: make(chan error, 1)}
	b.cmd = exec.Command(filepath.Join(bin, "pgbench"), append(args, connStr)...)
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	t.Cleanup(b.stop)
	return b
}

// stop ends pgbench: its transactions in flight are not acknowledged.
func (b *runningPgbench) stop() {
	b.once.Do(func() {
		_ = b.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-b.done:
		case <-time.After(time.Minute):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
}
