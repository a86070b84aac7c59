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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/control/pgcluster"
	"github.com/zenithdb/zenith/control/zenithtest"
)

// freeLoopbackAddr returns a loopback address with a port that was free
// a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

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
	pgAddr, httpAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	cmd := exec.Command(bin, "pageserver", "run", "-D", dir, "--listen-pg", pgAddr, "--listen-http", httpAddr)
	cmd.Dir = dir
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil && cmd.Process.Pid > 0 {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("page server output:\n%s", stderr.String())
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
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("page server exited before it served: %v", err)
		case <-ctx.Done():
			t.Fatalf("page server did not answer on %s: %v", pgAddr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	binDir, err := pgcluster.FindBinDir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "psql"), "-h", host, "-p", port, "-U", "zenith", "-X", "-A", "-t",
		"-c", "tenant_create", "-c", "tenant_list").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(lines[0]) || lines[1] != lines[0] {
		t.Fatalf("psql tenant_create, tenant_list printed %q, want the new tenant id twice", out)
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("page server after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("page server did not stop within 30 s of SIGTERM")
	}
	// The default log format is JSON, one object a line.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			break
		}
	}
	if !strings.Contains(stderr.String(), `"message":"page server stopped"`) {
		t.Errorf("the log does not say the page server stopped")
	}
	// Everything it wrote is under DIR.
	if _, err := os.Stat(filepath.Join(dir, "tenants", lines[0])); err != nil {
		t.Errorf("the tenant is not under %s: %v", dir, err)
	}

	// A second page server on the same address fails at once, clearly.
	blocker, err := net.Listen("tcp", pgAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	out, err = exec.CommandContext(ctx, bin, "pageserver", "run", "-D", dir, "--listen-pg", pgAddr, "--listen-http", freeLoopbackAddr(t)).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "address already in use") {
		t.Errorf("pageserver run on a taken port: %v\n%s", err, out)
	}
}
