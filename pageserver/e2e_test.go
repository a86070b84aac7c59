package pageserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// pageServerProcess is a `zenith pageserver run` process that the test can
// kill and restart on the same directory and ports.
type pageServerProcess struct {
	bin, dir         string
	pgAddr, httpAddr string

	mu     sync.Mutex
	cmd    *osexec.Cmd
	exited chan error
	output bytes.Buffer
}

// startPageServerProcess runs the page server in a temporary directory on
// loopback ports chosen now; it is killed when the test ends.
func startPageServerProcess(t *testing.T) *pageServerProcess {
	t.Helper()
	dir, err := os.MkdirTemp("", "zenith-e2e-pageserver-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the redo processes run as postgres
		t.Fatal(err)
	}
	p := &pageServerProcess{bin: zenithtest.Binary(t), dir: dir, pgAddr: freeAddr(t), httpAddr: freeAddr(t)}
	t.Cleanup(func() {
		p.mu.Lock()
		cmd, exited := p.cmd, p.exited
		p.mu.Unlock()
		if cmd != nil {
			select {
			case err := <-exited:
				exited <- err
			default:
				cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("page server output:\n%s", p.output.String())
			p.mu.Unlock()
		}
		os.RemoveAll(dir)
	})
	if err := p.restart(); err != nil {
		t.Fatal(err)
	}
	return p
}

// freeAddr is a loopback address whose port nothing listens on.
func freeAddr(t *testing.T) string { return zenithtest.FreeAddr(t) }

// Write collects the process's output.
func (p *pageServerProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

// restart starts the process and waits until its page service answers.
func (p *pageServerProcess) restart() error {
	cmd := osexec.Command(p.bin, "pageserver", "run", "-D", p.dir, "--listen-pg", p.pgAddr, "--listen-http", p.httpAddr)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := pgx.Connect(context.Background(), p.connString())
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("page server exited before it served: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("page server does not answer on %s: %v", p.pgAddr, err)
		}
	}
}

func (p *pageServerProcess) connString() string {
	host, port, _ := net.SplitHostPort(p.pgAddr)
	return fmt.Sprintf("host=%s port=%s user=zenith dbname=pageserver sslmode=disable connect_timeout=5 default_query_exec_mode=simple_protocol", host, port)
}

func (p *pageServerProcess) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), p.connString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *pageServerProcess) kill(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	exited <- err
}

// stop sends SIGTERM and expects exit status 0.
func (p *pageServerProcess) stop(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("page server after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("page server did not stop within a minute of SIGTERM")
	}
}
