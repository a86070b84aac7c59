package control_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUncleanStopRebuildsFromPageserver: computes run with fsync=off,
// so after an unclean stop their data directory may hold anything (a
// host crash loses what was never fsynced). The test kills a compute
// with SIGKILL after acknowledged commits, truncates every file of its
// data directory to nothing (the worst such a crash can do), and starts
// it again: the start rebuilds the directory from the page server, with
// every acknowledged commit. Without safekeepers the page server is the
// synchronous standby; with one, the safekeeper.
func TestUncleanStopRebuildsFromPageserver(t *testing.T) {
	for _, sk := range []int{0, 1} {
		t.Run(fmt.Sprintf("safekeepers=%d", sk), func(t *testing.T) {
			env := newSKEnv(t, sk)
			pg := env.Postgres.CreateStart("main")
			conn := pg.Connect()
			if got := queryString(t, conn, "SHOW fsync"); got != "off" {
				t.Fatalf("SHOW fsync on a compute: %q, want off", got)
			}
			exec1(t, conn, "CREATE TABLE acked (id int PRIMARY KEY)")
			const commits = 200
			for i := 1; i <= commits; i++ {
				exec1(t, conn, "INSERT INTO acked VALUES ($1)", i)
			}
			conn.Close(context.Background())

			matches, err := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", "main"))
			if err != nil || len(matches) != 1 {
				t.Fatalf("the directory of compute node main: %v, %v", matches, err)
			}
			nodeDir := matches[0]
			killTree(t, postmasterPID(t, filepath.Join(nodeDir, "pgdata")))
			// What a user does after a crash: it unmounts a lazy node's
			// data directory.
			env.Zenith("pg", "stop", "main")
			truncateAll(t, nodeDir)

			out, errOut, err := env.Run("pg", "start", "main")
			if err != nil {
				t.Fatalf("zenith pg start main after kill -9: %v\n%s", err, errOut)
			}
			if !strings.Contains(errOut, "not stopped cleanly: rebuilding") {
				t.Errorf("zenith pg start after kill -9 does not say it rebuilds the data directory:\n%s%s", errOut, out)
			}
			if got := count(t, pg.Connect(), "acked"); got != commits {
				t.Errorf("after kill -9 and a lost data directory: %d rows, want the %d acknowledged", got, commits)
			}
		})
	}
}

// postmasterPID reads the postmaster's pid from dataDir.
func postmasterPID(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid < 1 {
		t.Fatalf("postmaster.pid starts with %q, not a pid", first)
	}
	return pid
}

// killTree sends SIGKILL to pid and its children and waits until they
// are gone.
func killTree(t *testing.T, pid int) {
	t.Helper()
	pids := append(childPIDs(pid), pid)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for !isGone(p) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still runs 10 s after kill -9", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// childPIDs returns the pids whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if c, err := strconv.Atoi(filepath.Base(filepath.Dir(s))); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// truncateAll cuts every file PostgreSQL wrote in a compute node's
// directory nodeDir (its data directory, eager or lazy) to zero bytes,
// but for postmaster.pid, which it removes (a reboot makes it stale:
// zenith refuses to guess about an empty one). zenith's own node file,
// written durably, stays.
func truncateAll(t *testing.T, nodeDir string) {
	t.Helper()
	n := 0
	err := filepath.Walk(nodeDir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || path == filepath.Join(nodeDir, "node.toml") {
			return err
		}
		n++
		if fi.Name() == "postmaster.pid" {
			return os.Remove(path)
		}
		return os.Truncate(path, 0)
	})
	if err != nil || n == 0 {
		t.Fatalf("truncate the files of %s: %d files, %v", nodeDir, n, err)
	}
}
