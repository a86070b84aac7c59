// Package pgtest gives tests a real, throw-away PostgreSQL 15 server: a
// fresh initdb in its own temporary directory, started on a loopback port
// chosen at run time, and stopped by pid and removed when the test ends,
// whether it passed or not.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// SkipIfShort skips the test under go test -short (scripts/test --quick):
// a test that starts PostgreSQL or the zenith binary takes seconds and
// belongs to the full suite, not to the edit loop.
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL; skipped in -short mode")
	}
}

// Start initdbs and starts a PostgreSQL 15 cluster with the given server
// settings (nil for none), and registers a cleanup that stops it (fast,
// then immediate if that hangs) and removes its directory. A test that
// failed also gets the end of the server log. It fails the test if
// PostgreSQL 15 is missing: scripts/setup installs it.
func Start(t testing.TB, settings map[string]string) *pgcluster.Cluster {
	t.Helper()
	c := New(t, settings)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start test cluster: %v", err)
	}
	return c
}

// New is Start without starting the server: the data directory exists
// (initdb done) and cleanup is registered; the test calls Start itself.
func New(t testing.TB, settings map[string]string) *pgcluster.Cluster {
	t.Helper()
	SkipIfShort(t)
	// Not t.TempDir(): that is 0700 root, which the postgres OS user
	// cannot enter. The name carries our pid so that a later test process
	// can remove what this one leaves if it is killed before its cleanup.
	removeStaleDirs()
	root, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		t.Fatalf("create test directory: %v", err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatalf("chmod test directory: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.New(ctx, pgcluster.Options{
		DataDir:  filepath.Join(root, "data"),
		Settings: settings,
		// A test binary killed by its -timeout runs no cleanup: the kernel
		// stops the server then.
		StopWithParent: true,
		Log:            zerolog.New(zerolog.ConsoleWriter{Out: testWriter{t}, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}).Level(zerolog.InfoLevel),
	})
	if err != nil {
		os.RemoveAll(root)
		t.Fatalf("test cluster: %v", err)
	}
	t.Cleanup(func() { cleanup(t, c, root) })
	if err := c.InitDB(ctx, pgcluster.InitOptions{NoSync: true}); err != nil {
		t.Fatalf("test cluster: %v", err)
	}
	return c
}

func cleanup(t testing.TB, c *pgcluster.Cluster, root string) {
	if t.Failed() {
		t.Logf("server log %s ends with:\n%s", c.LogFile(), c.LogTail(40))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := c.Stop(ctx, pgcluster.StopFast)
	cancel()
	if err != nil {
		t.Logf("stop test cluster: %v; stopping it immediately", err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = c.Stop(ctx, pgcluster.StopImmediate)
		cancel()
		if err != nil {
			t.Errorf("stop test cluster: %v; its directory %s is left behind", err, root)
			return
		}
	}
	if os.Getenv("ZENITH_KEEP_TEST_DIRS") != "" {
		t.Logf("ZENITH_KEEP_TEST_DIRS is set: keeping %s", root)
		return
	}
	if err := os.RemoveAll(root); err != nil {
		t.Errorf("remove test cluster directory: %v", err)
	}
}

// dirPrefix starts the name of every test cluster's directory, followed
// by the pid of the test process that made it.
const dirPrefix = "zenith-pgtest-"

// removeStaleDirs removes the directories of test processes that died
// before their cleanup, unless a server still runs in one.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*-*"))
	for _, d := range dirs {
		owner, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), dirPrefix), "-")
		pid, err := strconv.Atoi(owner)
		if err != nil || pid < 1 || pid == os.Getpid() || alive(pid) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pm, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pm > 0 && alive(pm) {
				continue
			}
		}
		os.RemoveAll(d)
	}
}

func alive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// StandbyFlushBehind reports whether the compute conn is connected to
// sees the standby whose application_name is appName as flushed below
// the compute's own flush LSN, in pg_stat_replication. A walsender that
// has had no reply yet shows a NULL flush: nothing is reported flushed,
// which is behind.
func StandbyFlushBehind(ctx context.Context, conn *pgx.Conn, appName string) (bool, error) {
	var behind bool
	err := conn.QueryRow(ctx, `SELECT coalesce(flush_lsn, '0/0') < pg_current_wal_flush_lsn() FROM pg_stat_replication
		WHERE application_name = $1`, appName).Scan(&behind)
	return behind, err
}
