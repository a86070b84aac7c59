// Package s3test gives tests a real S3 server: versitygw (an S3 gateway
// over a POSIX directory, Apache-2.0), started on a loopback port chosen at
// run time, serving a bucket in the test's temporary directory, and
// stopped by pid when the test ends. It is never a fake: a test that needs
// S3 and cannot find versitygw fails, naming the command that installs it
// (scripts/test installs it into the tools cache).
package s3test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/netport"
)

// Version is the versitygw release the tests run.
const Version = "v1.8.0"

// BinaryEnv names the environment variable that may give the path of the
// versitygw binary.
const BinaryEnv = "ZENITH_VERSITYGW"

// Credentials of the server's root user.
const (
	AccessKey = "zenith-test"
	SecretKey = "zenith-test-secret"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is its URL, http://127.0.0.1:PORT.
	Endpoint string
	// Dir holds its buckets, one directory each.
	Dir  string
	addr string
	bin  string
	cmd  *exec.Cmd
	log  *os.File
}

// Binary returns the path of versitygw: $ZENITH_VERSITYGW, or where
// scripts/test installs it.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, "zenith", "tools", "versitygw-"+Version, "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found at %s (%s unset): install it with GOBIN=%s go install github.com/versity/versitygw/cmd/versitygw@%s",
			p, BinaryEnv, filepath.Dir(p), Version)
	}
	return p, nil
}

// Start starts a server with an empty bucket named bucket, and registers
// its stop.
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	port, err := netport.Pick("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{Endpoint: "http://" + addr, Dir: dir, addr: addr, bin: bin}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() && s.log != nil {
			b, _ := os.ReadFile(s.log.Name())
			t.Logf("versitygw log:\n%s", b)
		}
	})
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Restart starts the server again after Stop, on the same port and
// directory.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return fmt.Errorf("versitygw is running (pid %d)", s.cmd.Process.Pid)
	}
	if s.log == nil {
		f, err := os.Create(filepath.Join(s.Dir, "versitygw.log"))
		if err != nil {
			return err
		}
		s.log = f
	}
	cmd := exec.Command(s.bin, "--access", AccessKey, "--secret", SecretKey, "--port", s.addr, "--quiet", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("versitygw did not listen on %s in 30s: %w", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL, by pid: a crash, as far as its clients
// can tell) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Env is the environment that points the AWS SDK at the server: its
// credentials, endpoint and region.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_REGION=us-east-1",
	}
}

// Setenv sets Env in this process for the rest of the test.
func (s *Server) Setenv(t testing.TB) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}
