package pgcluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
)

func TestFindBinDir(t *testing.T) {
	ctx := context.Background()
	fake14 := fakeBinDir(t, "postgres (PostgreSQL) 14.9")
	fake15 := fakeBinDir(t, "postgres (PostgreSQL) 15.4 (Debian 15.4-1)")
	tests := []struct {
		name     string
		override string
		want     string // the dir found, or "" when an error is expected
		errHas   []string
	}{
		{name: "default", want: pgcluster.DefaultBinDir},
		{name: "override", override: fake15, want: fake15},
		{name: "wrong version", override: fake14, errHas: []string{"version 14, want 15", "--pg-bin"}},
		{name: "missing dir", override: "/nonexistent/pg", errHas: []string{"PostgreSQL 15 not found in /nonexistent/pg", "no postgres"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pgcluster.FindBinDir(ctx, tt.override)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("FindBinDir(%q) = %q, %v; want %q, nil", tt.override, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("FindBinDir(%q) = %q, nil; want an error", tt.override, got)
			}
			if !errors.Is(err, pgcluster.ErrNotFound) {
				t.Errorf("error %v is not ErrNotFound", err)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// fakeBinDir makes a directory whose postgres prints version and whose
// initdb and pg_controldata exist.
// A directory's version is checked once, until its postgres changes:
// one replaced by version 14 is refused at the next look.
func TestFindBinDirRechecksAChangedPostgres(t *testing.T) {
	ctx := context.Background()
	dir := fakeBinDir(t, "postgres (PostgreSQL) 15.4")
	if _, err := pgcluster.FindBinDir(ctx, dir); err != nil {
		t.Fatal(err)
	}
	postgres := filepath.Join(dir, "postgres")
	if err := os.WriteFile(postgres, []byte("#!/bin/sh\necho 'postgres (PostgreSQL) 14.9'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A new modification time even where the clock is coarse.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(postgres, later, later); err != nil {
		t.Fatal(err)
	}
	if got, err := pgcluster.FindBinDir(ctx, dir); err == nil || !strings.Contains(err.Error(), "version 14") {
		t.Fatalf("FindBinDir of a directory whose postgres became 14 = %q, %v; want a version error", got, err)
	}
}

func fakeBinDir(t *testing.T, version string) string {
	dir := t.TempDir()
	for _, prog := range []string{"postgres", "initdb", "pg_controldata"} {
		script := fmt.Sprintf("#!/bin/sh\necho '%s'\n", version)
		if err := os.WriteFile(filepath.Join(dir, prog), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestStartServesSettingsOnLoopbackAsServerUser(t *testing.T) {
	c := pgtest.Start(t, map[string]string{"work_mem": "7MB", "application_name": "zenith test"})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for setting, want := range map[string]string{
		"work_mem":                "7MB",
		"listen_addresses":        "127.0.0.1",
		"port":                    fmt.Sprint(c.Port()),
		"unix_socket_directories": c.DataDir(),
		"server_version_num":      "150000",
	} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatalf("SHOW %s: %v", setting, err)
		}
		if setting == "server_version_num" {
			got = got[:2] + "0000"
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), fmt.Sprintf(".s.PGSQL.%d", c.Port()))); err != nil {
		t.Errorf("unix socket in the data directory: %v", err)
	}

	pid, err := c.PID()
	if err != nil {
		t.Fatalf("PID: %v", err)
	}
	if u := c.User(); u != nil {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("Uid:\t%d\t", u.UID); !strings.Contains(string(status), want) {
			t.Errorf("postmaster %d does not run as %s (uid %d):\n%s", pid, u.Name, u.UID, status)
		}
	}

	if err := c.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := c.PID(); !errors.Is(err, pgcluster.ErrNotRunning) {
		t.Errorf("PID after Stop: %v, want ErrNotRunning", err)
	}
	if err := exec.Command("kill", "-0", fmt.Sprint(pid)).Run(); err == nil {
		t.Errorf("postmaster %d still alive after Stop", pid)
	}
	if tail := c.LogTail(5); !strings.Contains(tail, "database system is shut down") {
		t.Errorf("server log does not show a clean shutdown:\n%s", tail)
	}
}

func TestStartFailureReportsServerLog(t *testing.T) {
	c := pgtest.New(t, map[string]string{"shared_buffers": "lots"})
	err := c.Start(context.Background())
	if err == nil {
		t.Fatal("Start with shared_buffers=lots succeeded")
	}
	if !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Errorf("Start error does not carry the server's complaint:\n%v", err)
	}
}

// TestStopFromAnotherCluster stops a server through a second Cluster on
// the same data directory, as `zenith pg stop` does for a server an
// earlier zenith process started; then crash recovery after an immediate
// stop.
func TestStopFromAnotherCluster(t *testing.T) {
	c := pgtest.Start(t, nil)
	ctx := context.Background()
	other, err := pgcluster.New(ctx, pgcluster.Options{DataDir: c.DataDir()})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := c.PID()
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.PID()
	if err != nil || got != pid {
		t.Fatalf("other.PID() = %d, %v; want %d", got, err, pid)
	}
	if err := other.Stop(ctx, pgcluster.StopImmediate); err != nil {
		t.Fatalf("Stop through the other Cluster: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("restart after immediate stop: %v", err)
	}
	if tail := c.LogTail(20); !strings.Contains(tail, "was interrupted") && !strings.Contains(tail, "not properly shut down") {
		t.Errorf("restart after an immediate stop shows no crash recovery:\n%s", tail)
	}
}

// TestStopRefusesForeignPid: a postmaster.pid naming a process that is not
// our postgres must never be signalled.
func TestStopRefusesForeignPid(t *testing.T) {
	c := pgtest.New(t, nil)
	ctx := context.Background()
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		<-done
	})
	pidFile := filepath.Join(c.DataDir(), "postmaster.pid")
	tests := []struct {
		name    string
		content string
		errHas  string
	}{
		{"not postgres", fmt.Sprintf("%d\n%s\n", sleeper.Process.Pid, c.DataDir()), "not our postgres"},
		{"zero", "0\n", "not a pid >= 1"},
		{"negative", "-1\n", "not a pid >= 1"},
		{"garbage", "hello\n", "not a pid >= 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(pidFile, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := c.Stop(ctx, pgcluster.StopFast)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("Stop with postmaster.pid %q: %v; want an error saying %q", tt.content, err, tt.errHas)
			}
		})
	}
	select {
	case err := <-done:
		t.Errorf("the foreign process was signalled and exited: %v", err)
		done <- err
	case <-time.After(100 * time.Millisecond):
	}
	os.Remove(pidFile)
}

func TestPrepareDirChecksReachability(t *testing.T) {
	u, err := pgcluster.ServerUser()
	if err != nil {
		t.Fatal(err)
	}
	if u == nil {
		t.Skip("not root: PostgreSQL runs as the calling user, nothing to check")
	}
	private, err := os.MkdirTemp("", "zenith-prepare-") // 0700, owned by root
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(private) })
	err = pgcluster.PrepareDir(filepath.Join(private, "data"), u)
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("PrepareDir under a 0700 root directory: %v; want a 'cannot reach' error", err)
	}
	if err := os.Chmod(private, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := pgcluster.PrepareDir(filepath.Join(private, "data"), u); err != nil {
		t.Fatalf("PrepareDir under a 0755 directory: %v", err)
	}
	st, err := os.Stat(filepath.Join(private, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", st.Mode().Perm())
	}
}

// TestStopWithParent kills, with SIGKILL, a process that started a
// server with StopWithParent: the server must go away on its own.
func TestStopWithParent(t *testing.T) {
	c := pgtest.New(t, nil)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperStartAndHang$")
	helper.Env = append(os.Environ(), "PGCLUSTER_HELPER_DATADIR="+c.DataDir())
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		t.Fatalf("helper printed no pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "postmaster ")))
	if err != nil || pid < 1 {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		t.Fatalf("helper printed %q, want a postmaster pid", line)
	}
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still runs 30s after the process that started it was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHelperStartAndHang is TestStopWithParent's child process: it starts
// a server with StopWithParent, prints its pid and waits to be killed.
func TestHelperStartAndHang(t *testing.T) {
	dir := os.Getenv("PGCLUSTER_HELPER_DATADIR")
	if dir == "" {
		t.Skip("only run by TestStopWithParent")
	}
	ctx := context.Background()
	c, err := pgcluster.New(ctx, pgcluster.Options{DataDir: dir, StopWithParent: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid, err := c.PID()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("postmaster %d\n", pid)
	time.Sleep(time.Minute)
	t.Fatal("not killed by TestStopWithParent within a minute")
}
