package zenithtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/zenithdb/zenith/repo/netport"
)

// commandTimeout bounds one zenith command run by a test.
const commandTimeout = 3 * time.Minute

// Options tune New.
type Options struct {
	// NoStart leaves the environment initialized but not started.
	NoStart bool
	// Safekeepers is how many safekeepers the environment runs (0:
	// compute nodes stream to the page server directly).
	Safekeepers int
	// Bin is the zenith binary to run instead of Binary's.
	Bin string
	// Wrap is a command every zenith command runs through, the binary
	// and its arguments appended (e.g. unshare and a shell).
	Wrap []string
	// Environ is added to every zenith command's environment.
	Environ []string
	// InitArgs, when set, are zenith init's flags instead of the page
	// server and safekeeper ports New picks on 127.0.0.1 (Safekeepers is
	// then ignored and PageserverAddr empty): a test of other addresses.
	InitArgs []string
	// MoreInitArgs are added to zenith init's flags (e.g.
	// --remote-storage).
	MoreInitArgs []string
	// Secure runs zenith init with --auth --tls: every service takes
	// only tokens, over TLS. SecureEnv in the environment turns it on for
	// every Env, to run the integration tests that way.
	Secure bool
}

// SecureEnv, set to 1, makes every Env Secure.
const SecureEnv = "ZENITH_TEST_SECURE"

// TraceEnv, set to 1, logs every zenith command a test runs with its
// start time and duration, and the phases of the command that times
// them (ZENITH_LOG=debug: pg start's), seen with go test -v: where a
// slow test's time goes.
const TraceEnv = "ZENITH_TEST_TRACE"

// Env is a zenith repository in a temporary directory, driven by the real
// binary as a user would: New runs `zenith init` and `zenith start` on
// ports chosen at run time; the test's cleanup runs `zenith stop
// --immediate` and then kills, by pid, anything of the environment still
// running.
type Env struct {
	t testing.TB
	// Bin is the zenith binary.
	Bin string
	// Dir is the temporary directory holding the repository.
	Dir string
	// RepoDir is the repository ($ZENITH_REPO_DIR of every command).
	RepoDir string
	// PageserverAddr is the page server's page service, host:port.
	PageserverAddr string
	// Postgres creates and starts compute nodes.
	Postgres *Computes
	// Secure is set when the services take only tokens over TLS
	// (Options.Secure): CAFile and Token are what a client needs.
	Secure bool

	wrap, environ []string
}

// New creates and starts an environment. opts may be nil.
func New(t testing.TB, opts *Options) *Env {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	bin := opts.Bin
	if bin == "" {
		bin = Binary(t)
	}
	dir, err := os.MkdirTemp("", "zenith-test-")
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL runs as another user when the test runs as root: it must
	// reach the compute nodes' directories in here.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, Bin: bin, Dir: dir, RepoDir: filepath.Join(dir, "repo"), wrap: opts.Wrap, environ: opts.Environ}
	e.Postgres = &Computes{env: e}
	t.Cleanup(e.cleanup)
	args := append([]string{"init"}, opts.InitArgs...)
	if opts.InitArgs == nil {
		pgPort, httpPort := freePort(t), freePort(t)
		e.PageserverAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(pgPort))
		args = append(args, "--pageserver-port", strconv.Itoa(pgPort), "--http-port", strconv.Itoa(httpPort))
	}
	if opts.Secure || os.Getenv(SecureEnv) == "1" {
		e.Secure = true
		args = append(args, "--auth", "--tls")
	}
	if opts.Safekeepers > 0 && opts.InitArgs == nil {
		args = append(args, "--safekeepers", strconv.Itoa(opts.Safekeepers),
			"--safekeeper-port", strconv.Itoa(freePortRange(t, opts.Safekeepers)),
			"--safekeeper-http-port", strconv.Itoa(freePortRange(t, opts.Safekeepers)))
	}
	args = append(args, opts.MoreInitArgs...)
	e.Zenith(args...)
	if !opts.NoStart {
		e.Zenith("start")
	}
	return e
}

// Run runs `zenith args...` on the environment and returns its stdout,
// stderr and error (an *exec.ExitError for a non-zero exit).
func (e *Env) Run(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	argv := append(append(append([]string{}, e.wrap...), e.Bin), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), e.environ...), "ZENITH_REPO_DIR="+e.RepoDir)
	trace := os.Getenv(TraceEnv) == "1"
	if trace {
		// The command's own timings (phases of pg start), logged
		// below and kept out of the stderr the test sees.
		cmd.Env = append(cmd.Env, "ZENITH_LOG=debug")
	}
	cmd.Dir = e.Dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err = cmd.Run()
	stderr = errOut.String()
	if trace {
		e.t.Logf("%s zenith %s: %.2fs, err %v", start.Format("15:04:05.000"), strings.Join(args, " "), time.Since(start).Seconds(), err)
		var rest []string
		for _, line := range strings.SplitAfter(stderr, "\n") {
			if strings.HasPrefix(line, "DBG ") {
				e.t.Logf("    %s", strings.TrimSuffix(line, "\n"))
			} else {
				rest = append(rest, line)
			}
		}
		stderr = strings.Join(rest, "")
	}
	return out.String(), stderr, err
}

// Zenith runs `zenith args...` and fails the test if it fails; it
// returns stdout.
func (e *Env) Zenith(args ...string) string {
	e.t.Helper()
	out, errOut, err := e.Run(args...)
	if err != nil {
		e.t.Fatalf("zenith %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// Processes returns the pids of the live processes of the environment:
// those whose command line or working directory is inside Dir (the page
// server, safekeepers, every postgres of the compute nodes).
func (e *Env) Processes() []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		if !bytes.Contains(cmdline, []byte(e.Dir+"/")) && !strings.HasPrefix(cwd, e.Dir+"/") {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join(p, "stat")); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				// A zombie alone in its thread group is gone, waiting
				// for its parent; one with threads left is still
				// exiting, its sockets open (as pgcluster.Alive says).
				if tasks, err := os.ReadDir(filepath.Join(p, "task")); err != nil || len(tasks) <= 1 {
					continue
				}
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// cleanup stops everything, shows the logs of a failed test, and removes
// the directory.
func (e *Env) cleanup() {
	if _, errOut, err := e.Run("stop", "--immediate"); err != nil {
		e.t.Logf("cleanup: zenith stop --immediate: %v\n%s", err, errOut)
	}
	for _, pid := range e.Processes() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		e.t.Logf("cleanup: killing pid %d, left running: %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '}))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.Processes()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// A lazy compute's FUSE mount that zenith did not remove (its server
	// was killed above): detach it, or removing the directory would fail
	// on it.
	for _, m := range mountsUnder(e.Dir) {
		e.t.Errorf("cleanup: %s was left mounted", m)
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			e.t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	if e.t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(e.RepoDir, "*.log"))
		nodeLogs, _ := filepath.Glob(filepath.Join(e.RepoDir, "pgdatadirs", "tenants", "*", "*", "*.log"))
		for _, l := range append(logs, nodeLogs...) {
			b, _ := os.ReadFile(l)
			e.t.Logf("%s ends with:\n%s", l, lastLines(b, 40))
		}
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		e.t.Logf("cleanup: %v", err)
	}
}

// mountsUnder returns the mount points inside dir.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort picks a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	return freePortRange(t, 1)
}

// FreeAddr is a loopback address (host:port) with a port that nothing
// listens on, for a server a test is about to start (netport.Pick).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

// freePortRange finds n consecutive free ports on 127.0.0.1 and returns
// the first.
func freePortRange(t testing.TB, n int) int {
	t.Helper()
	p, err := netport.Pick("127.0.0.1", n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Computes creates and starts compute nodes of an Env.
type Computes struct{ env *Env }

// Postgres is a compute node of an Env.
type Postgres struct {
	env *Env
	// Name is the node's name.
	Name string
	// ConnString is its connection URL (as `zenith pg start` printed it).
	ConnString string
	// Tenant is the --tenant the node was made with ("" for the default).
	Tenant string
}

// CreateStart runs `zenith pg start BRANCH args...` (args: pg create's
// flags, e.g. "--name", "n2", "--lsn", "0/16B9188", "--tenant", ID) and
// returns the running node.
func (c *Computes) CreateStart(branch string, args ...string) *Postgres {
	c.env.t.Helper()
	out := c.env.Zenith(append([]string{"pg", "start", branch}, args...)...)
	p := &Postgres{env: c.env, Name: flagValue(args, "--name", branch), Tenant: flagValue(args, "--tenant", "")}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	p.ConnString = lines[len(lines)-1]
	if !strings.HasPrefix(p.ConnString, "postgresql://") {
		c.env.t.Fatalf("zenith pg start %s printed %q, not a connection string", branch, out)
	}
	return p
}

func flagValue(args []string, name, def string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return def
}

// Connect opens an autocommit connection to database postgres, closed
// when the test ends.
func (p *Postgres) Connect() *pgx.Conn {
	p.env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.ConnString+"?sslmode=disable")
	if err != nil {
		p.env.t.Fatalf("connect to compute node %s: %v", p.Name, err)
	}
	p.env.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (p *Postgres) tenantArgs() []string {
	if p.Tenant == "" {
		return nil
	}
	return []string{"--tenant", p.Tenant}
}

// Stop runs `zenith pg stop NODE`.
func (p *Postgres) Stop() {
	p.env.t.Helper()
	p.env.Zenith(append([]string{"pg", "stop", p.Name}, p.tenantArgs()...)...)
}

// Destroy runs `zenith pg stop NODE --destroy`.
func (p *Postgres) Destroy() {
	p.env.t.Helper()
	p.env.Zenith(append([]string{"pg", "stop", p.Name, "--destroy"}, p.tenantArgs()...)...)
}

// String names the node in messages.
func (p *Postgres) String() string { return fmt.Sprintf("compute node %s", p.Name) }

// CAFile is the local CA of a Secure environment (sslrootcert).
func (e *Env) CAFile() string { return filepath.Join(e.RepoDir, "tls", "ca.crt") }

// Token is `zenith token args...` (--admin, or --tenant ID).
func (e *Env) Token(args ...string) string {
	e.t.Helper()
	return strings.TrimSpace(e.Zenith(append([]string{"token"}, args...)...))
}

// PageserverConnString is a libpq connection string to the page service,
// with TLS checked against the CA and token as password when the
// environment is Secure ("" for none).
func (e *Env) PageserverConnString(token string) string {
	host, port, _ := net.SplitHostPort(e.PageserverAddr)
	s := fmt.Sprintf("host=%s port=%s user=zenith dbname=pageserver connect_timeout=10", host, port)
	if !e.Secure {
		return s + " sslmode=disable"
	}
	s += " sslmode=verify-full sslrootcert=" + e.CAFile()
	if token != "" {
		s += " password=" + token
	}
	return s
}
