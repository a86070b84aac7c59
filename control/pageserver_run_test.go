package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// syncBuffer is a bytes.Buffer a process can write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runningPageserver is a `zenith pageserver run` process.
type runningPageserver struct {
	cmd    *exec.Cmd
	exited chan error
	output *syncBuffer
}

// startPageserverRun starts `zenith pageserver run` on dir and waits until
// its page service answers; the process is killed at the end of the test
// if it still runs.
func startPageserverRun(t *testing.T, bin, dir, pgAddr, httpAddr string) *runningPageserver {
	t.Helper()
	p := &runningPageserver{
		cmd:    exec.Command(bin, "pageserver", "run", "-D", dir, "--listen-pg", pgAddr, "--listen-http", httpAddr),
		exited: make(chan error, 1),
		output: &syncBuffer{},
	}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("page server output:\n%s", p.output.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	host, port, _ := net.SplitHostPort(pgAddr)
	connStr := fmt.Sprintf("host=%s port=%s user=zenith sslmode=disable connect_timeout=5", host, port)
	for {
		c, err := pgconn.Connect(ctx, connStr)
		if err == nil {
			c.Close(ctx)
			return p
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("page server exited before it served: %v", err)
		case <-ctx.Done():
			t.Fatalf("page server did not answer on %s: %v", pgAddr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and expects exit status 0.
func (p *runningPageserver) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Fatalf("page server after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("page server did not stop within 30 s of SIGTERM")
	}
}

// psql runs psql against the page service and returns its unaligned,
// tuples-only output.
func psql(t *testing.T, pgAddr string, cmds ...string) string {
	t.Helper()
	binDir, err := pgcluster.FindBinDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(pgAddr)
	args := []string{"-h", host, "-p", port, "-U", "zenith", "-X", "-A", "-t"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command(filepath.Join(binDir, "psql"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %v: %v\n%s", cmds, err, out)
	}
	return string(out)
}

func TestPageserverRun(t *testing.T) {
	bin := zenithtest.Binary(t)
	dir, err := os.MkdirTemp("", "zenith-pageserver-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// No pageserver.toml: the defaults, with the addresses from the flags.
	pgAddr, httpAddr := zenithtest.FreeAddr(t), zenithtest.FreeAddr(t)
	ps := startPageserverRun(t, bin, dir, pgAddr, httpAddr)

	// It runs (the process started, executed again) with its GODEBUG
	// setting (pageserver.RuntimeEnviron).
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", ps.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(environ), "\x00"), "GODEBUG=schedtrace=2147483647") {
		t.Errorf("the page server's environment has no GODEBUG=schedtrace=2147483647: %q", environ)
	}

	lines := strings.Fields(psql(t, pgAddr, "tenant_create", "tenant_list"))
	if len(lines) != 2 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(lines[0]) || lines[1] != lines[0] {
		t.Fatalf("psql tenant_create, tenant_list printed %q, want the new tenant id twice", lines)
	}

	resp, err := http.Get("http://" + httpAddr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var status struct{ Tenants int }
	if err := json.Unmarshal(body, &status); err != nil || status.Tenants != 1 {
		t.Errorf("GET /v1/status = %s (%v), want 1 tenant", body, err)
	}

	ps.stop(t)
	// The default log format is JSON, one object a line.
	out := ps.output.String()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			break
		}
	}
	if !strings.Contains(out, `"message":"page server stopped"`) {
		t.Errorf("the log does not say the page server stopped")
	}
	// Everything it wrote is under DIR.
	if _, err := os.Stat(filepath.Join(dir, "tenants", lines[0])); err != nil {
		t.Errorf("the tenant is not under %s: %v", dir, err)
	}

	// Started again on the same directory, it has the tenant.
	ps = startPageserverRun(t, bin, dir, pgAddr, httpAddr)
	if got := strings.TrimSpace(psql(t, pgAddr, "tenant_list")); got != lines[0] {
		t.Errorf("tenant_list after a restart = %q, want %s", got, lines[0])
	}

	// A second page server on the same address fails at once, clearly.
	out2, err := exec.Command(bin, "pageserver", "run", "-D", dir, "--listen-pg", pgAddr, "--listen-http", zenithtest.FreeAddr(t)).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out2), "address already in use") {
		t.Errorf("pageserver run on a taken port: %v\n%s", err, out2)
	}
	ps.stop(t)
}
