package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
	"github.com/zenithdb/zenith/repo/netport"
)

// DefaultSuperuser is the superuser InitDB creates; Cluster connects as it.
const DefaultSuperuser = "postgres"

// DefaultStartTimeout bounds how long Start waits for the server to accept
// connections (crash recovery of a big WAL backlog may need more).
const DefaultStartTimeout = 60 * time.Second

// maxSocketPath is the longest unix socket path the kernel accepts
// (sizeof(sockaddr_un.sun_path) - 1 on Linux).
const maxSocketPath = 107

// Options describe one PostgreSQL cluster (data directory and server).
type Options struct {
	// BinDir holds the PostgreSQL 15 programs; empty means FindBinDir's
	// search.
	BinDir string
	// DataDir is the data directory (PGDATA). Required.
	DataDir string
	// SocketDir is the unix socket directory (unix_socket_directories);
	// empty means DataDir.
	SocketDir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one at each Start.
	Port int
	// ListenAddresses is the server's listen_addresses (hosts, comma
	// separated); empty means 127.0.0.1. Cluster connects to the first
	// (127.0.0.1 for a wildcard), so it must accept the superuser there.
	ListenAddresses string
	// Settings are server settings passed as `-c name=value` at Start,
	// over postgresql.conf.
	Settings map[string]string
	// LogFile receives the server's stderr; empty means DataDir + ".log".
	LogFile string
	// Superuser is the role Cluster connects as; empty means
	// DefaultSuperuser.
	Superuser string
	// StartTimeout bounds Start; zero means DefaultStartTimeout.
	StartTimeout time.Duration
	// ReadyAtPidFile makes Start return as soon as postmaster.pid says
	// the server accepts connections, without trying one: for a caller
	// that connects right after anyway, and would otherwise wait for
	// two backends' start-ups in a row (on a lazy compute, each reads
	// the catalogs through FUSE).
	ReadyAtPidFile bool
	// PidFileDir is where Start reads postmaster.pid while it waits for
	// the server to say it is ready; empty means DataDir. A lazy
	// compute's DataDir is a FUSE mount, where each read of the file is
	// about five requests to its FUSE server, competing with the
	// starting server for the CPU; the same file in the mount's backing directory is
	// current after each of the postmaster's updates, since it closes
	// the file after each and the kernel writes a FUSE file's dirty
	// pages back at close (fuse_flush).
	PidFileDir string
	// StopWithParent makes the kernel stop the server (immediate
	// shutdown, SIGQUIT) if the process that started it dies without
	// stopping it, e.g. a test binary killed by its timeout. For
	// throw-away clusters only: a compute node must outlive the zenith
	// command that started it. (The signal comes when the OS thread that
	// started the server exits, which in Go is when the process does.)
	StopWithParent bool
	// Log receives what the cluster does; the zero Logger discards it.
	Log zerolog.Logger
}

// Cluster is one PostgreSQL 15 data directory and the postmaster serving
// it. Its methods are safe for concurrent use.
type Cluster struct {
	opts Options
	user *OSUser
	log  zerolog.Logger

	mu   sync.Mutex
	port int
	// proc is the postmaster this Cluster started, nil if none; exited is
	// closed once it has been reaped.
	proc   *os.Process
	exited chan struct{}
	// logStart is the size of LogFile when the server was started: the
	// tail shown in errors begins there.
	logStart int64
}

// New resolves the binaries and the OS user for a cluster in
// opts.DataDir. It starts nothing.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.DataDir == "" {
		return nil, errors.New("pgcluster: no data directory given")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolve data directory %s: %w", opts.DataDir, err)
	}
	opts.DataDir = dataDir
	if opts.BinDir, err = FindBinDir(ctx, opts.BinDir); err != nil {
		return nil, err
	}
	if opts.SocketDir == "" {
		opts.SocketDir = opts.DataDir
	}
	if n := len(opts.SocketDir) + len("/.s.PGSQL.65535"); n > maxSocketPath {
		return nil, fmt.Errorf("unix socket directory %s is too long for a socket path (%d > %d bytes): choose a shorter SocketDir", opts.SocketDir, n, maxSocketPath)
	}
	if opts.LogFile == "" {
		opts.LogFile = opts.DataDir + ".log"
	}
	if opts.Superuser == "" {
		opts.Superuser = DefaultSuperuser
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	user, err := ServerUser()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		opts: opts,
		user: user,
		log:  opts.Log.With().Str("pgdata", opts.DataDir).Logger(),
		port: opts.Port,
	}
	return c, nil
}

// DataDir is the cluster's absolute data directory.
func (c *Cluster) DataDir() string { return c.opts.DataDir }

// BinDir is the directory of the PostgreSQL programs the cluster uses.
func (c *Cluster) BinDir() string { return c.opts.BinDir }

// LogFile is the file the server's log goes to.
func (c *Cluster) LogFile() string { return c.opts.LogFile }

// Port is the TCP port the server listens on (chosen by Start when
// Options.Port was 0).
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// User is the OS user PostgreSQL runs as; nil means the calling user.
func (c *Cluster) User() *OSUser { return c.user }

// ConnString is a libpq connection string for database dbname, over TCP
// on the first listen address (127.0.0.1 by default), as the superuser.
func (c *Cluster) ConnString(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.connectHost(), c.Port(), c.opts.Superuser, dbname)
}

// connectHost is the host ConnString connects to.
func (c *Cluster) connectHost() string {
	first, _, _ := strings.Cut(c.listenAddresses(), ",")
	switch first = strings.TrimSpace(first); first {
	case "", "*", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return first
}

// listenAddresses is the server's listen_addresses.
func (c *Cluster) listenAddresses() string {
	if c.opts.ListenAddresses == "" {
		return "127.0.0.1"
	}
	return c.opts.ListenAddresses
}

// Command returns a command running the PostgreSQL program prog (e.g.
// "pg_controldata") from the cluster's BinDir, as the server's OS user.
func (c *Cluster) Command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.opts.BinDir, prog), args...)
	RunAs(cmd, c.user)
	return cmd
}

// InitOptions tune InitDB.
type InitOptions struct {
	// NoSync skips initdb's final fsync (--no-sync): for throw-away
	// clusters such as tests, where it saves seconds.
	NoSync bool
	// Args are extra initdb arguments.
	Args []string
}

// InitDB creates the data directory with initdb: superuser
// Options.Superuser, trust authentication (the server listens on
// loopback and its own socket directory only), UTF8, locale C. The
// directory must not exist or be empty.
func (c *Cluster) InitDB(ctx context.Context, o InitOptions) error {
	if err := PrepareDir(c.opts.DataDir, c.user); err != nil {
		return err
	}
	args := []string{"-D", c.opts.DataDir, "-U", c.opts.Superuser, "-A", "trust", "-E", "UTF8", "--locale=C"}
	if o.NoSync {
		args = append(args, "--no-sync")
	}
	args = append(args, o.Args...)
	cmd := c.Command(ctx, "initdb", args...)
	cmd.Dir = c.opts.DataDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.opts.DataDir, err, lastLines(out, 20))
	}
	c.log.Debug().Msg("initdb done")
	return nil
}

// Start starts the postmaster and waits until it accepts connections. On
// failure the server is stopped and the error carries the end of its log.
// With Options.Port 0 a port taken by someone else between choosing it and
// binding it is retried with another.
func (c *Cluster) Start(ctx context.Context) error {
	const attempts = 3
	for i := 1; ; i++ {
		err := c.startOnce(ctx)
		if err == nil || c.opts.Port != 0 || i == attempts || !errors.Is(err, errPortTaken) {
			return err
		}
		c.log.Debug().Err(err).Msg("port taken, retrying with another")
	}
}

var errPortTaken = errors.New("port already in use")

func (c *Cluster) startOnce(ctx context.Context) error {
	c.mu.Lock()
	if c.proc != nil {
		c.mu.Unlock()
		return fmt.Errorf("postgres for %s already started by this process (pid %d)", c.opts.DataDir, c.proc.Pid)
	}
	port := c.opts.Port
	if port == 0 {
		p, err := freePort()
		if err != nil {
			c.mu.Unlock()
			return err
		}
		port = p
	}
	c.port = port
	c.mu.Unlock()

	if c.opts.SocketDir != c.opts.DataDir {
		if err := PrepareDir(c.opts.SocketDir, c.user); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(c.opts.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logf.Close()
	st, err := logf.Stat()
	if err != nil {
		return fmt.Errorf("stat server log: %w", err)
	}

	args := []string{"-D", c.opts.DataDir, "-p", strconv.Itoa(port), "-h", c.listenAddresses(), "-k", c.opts.SocketDir}
	keys := make([]string, 0, len(c.opts.Settings))
	for k := range c.opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+c.opts.Settings[k])
	}
	// Not CommandContext: the server outlives ctx (and, for compute nodes,
	// this process); only Stop ends it.
	cmd := exec.Command(filepath.Join(c.opts.BinDir, "postgres"), args...)
	RunAs(cmd, c.user)
	cmd.Dir = c.opts.DataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own session: a Ctrl-C at our terminal must not reach the server
	// behind Stop's back.
	cmd.SysProcAttr.Setsid = true
	if c.opts.StopWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	}
	exited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// The kernel ties Pdeathsig to the OS thread that started the
		// child: this goroutine keeps that thread until the server is
		// reaped, so no other goroutine can end it early.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.mu.Lock()
		c.proc, c.exited, c.logStart = cmd.Process, exited, st.Size()
		c.mu.Unlock()
		started <- nil
		_ = cmd.Wait() // how it exited shows in the server log
		c.mu.Lock()
		if c.proc == cmd.Process {
			c.proc = nil
		}
		c.mu.Unlock()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	log := c.log.With().Int("pid", cmd.Process.Pid).Int("port", port).Logger()
	log.Debug().Msg("postgres starting")

	if err := c.waitReady(ctx, cmd.Process.Pid, exited); err != nil {
		tail := c.LogTail(30)
		select {
		case <-exited:
		default:
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if serr := c.Stop(stopCtx, StopImmediate); serr != nil {
				log.Error().Err(serr).Msg("could not stop postgres after failed start")
			}
			cancel()
		}
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return fmt.Errorf("start postgres on %s, port %d: %w\nserver log %s ends with:\n%s", c.opts.DataDir, port, err, c.opts.LogFile, tail)
	}
	pid, err := c.PID()
	if err != nil {
		return err
	}
	log.Info().Int("pid", pid).Msg("postgres accepts connections")
	return nil
}

// Polls of waitReady.
const (
	// pidFilePoll is how often waitReady reads postmaster.pid: a small
	// file read (see Options.PidFileDir).
	pidFilePoll = 5 * time.Millisecond
	// connectPoll is how often it tries a connection: each is a backend
	// forked and turned away while the server starts.
	connectPoll = 50 * time.Millisecond
)

// waitReady waits until the server answers a connection attempt with
// anything other than "the database system is starting up" (57P03).
// It first watches postmaster.pid until the postmaster pid wrote there
// says it accepts connections (ready, or standby for a hot standby), as
// pg_ctl -w does, every pidFilePoll: the connection attempts, a new
// backend each, begin once the server says it takes them.
func (c *Cluster) waitReady(ctx context.Context, pid int, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	if err := c.waitPidFileReady(ctx, pid, exited); err != nil || c.opts.ReadyAtPidFile {
		return err
	}
	tick := time.NewTicker(connectPoll)
	defer tick.Stop()
	var lastErr error
	for {
		attempt, acancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(attempt, c.ConnString("postgres"))
		acancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code != "57P03" {
			return nil // it answered: ready, if not for this database or role
		}
		lastErr = err
		select {
		case <-exited:
			return errors.New("postgres exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections after %v (last attempt: %v)", c.opts.StartTimeout, lastErr)
		case <-tick.C:
		}
	}
}

// waitPidFileReady waits until postmaster.pid names pid and says the
// server is ready or, for a hot standby, takes connections
// (LOCK_FILE_LINE_PM_STATUS, line 8: PM_STATUS_READY, PM_STATUS_STANDBY).
// A server that never says so (one in recovery that has not reached a
// consistent state) is waited for until ctx ends, as the connection
// attempts would.
func (c *Cluster) waitPidFileReady(ctx context.Context, pid int, exited <-chan struct{}) error {
	dir := c.opts.PidFileDir
	if dir == "" {
		dir = c.opts.DataDir
	}
	path := filepath.Join(dir, "postmaster.pid")
	tick := time.NewTicker(pidFilePoll)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && pidFileReady(b, pid) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("postgres exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections after %v (postmaster.pid does not say ready)", c.opts.StartTimeout)
		case <-tick.C:
		}
	}
}

// pidFileReady reports whether postmaster.pid's contents b name pid
// (line 1) and say ready or standby (line 8).
func pidFileReady(b []byte, pid int) bool {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(pid) {
		return false
	}
	switch strings.TrimSpace(lines[7]) {
	case "ready", "standby":
		return true
	}
	return false
}

// LogTail returns the last n lines the server logged since it was last
// started by this Cluster.
func (c *Cluster) LogTail(n int) string {
	c.mu.Lock()
	start := c.logStart
	c.mu.Unlock()
	b, err := os.ReadFile(c.opts.LogFile)
	if err != nil {
		return fmt.Sprintf("(cannot read server log: %v)", err)
	}
	if start <= int64(len(b)) {
		b = b[start:]
	}
	return lastLines(b, n)
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePort picks a free TCP port on 127.0.0.1 (netport.Pick).
func freePort() (int, error) {
	p, err := netport.Pick("127.0.0.1", 1)
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	return p, nil
}

// ControlData runs pg_controldata on the data directory and returns its
// fields by name (e.g. "Latest checkpoint location", "Database cluster
// state").
func (c *Cluster) ControlData(ctx context.Context) (map[string]string, error) {
	cmd := c.Command(ctx, "pg_controldata", "-D", c.opts.DataDir)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("pg_controldata %s: %w: %s", c.opts.DataDir, err, stderr)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return fields, nil
}
