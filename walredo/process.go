package walredo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// Errors callers can branch on (wrapped, with details).
var (
	// ErrProcessDied fails the requests a redo process had in flight
	// when it ended: a PANIC in PostgreSQL, a kill, a protocol error.
	ErrProcessDied = errors.New("walredo process died")
	// ErrTimeout fails a request that got no reply within the request
	// timeout; its process is killed.
	ErrTimeout = errors.New("walredo request timed out")
	// ErrClosed fails requests made after Close.
	ErrClosed = errors.New("walredo manager closed")
)

// RedoError is an ERROR PostgreSQL raised while serving one request; the
// process survives it.
type RedoError struct {
	Message string
}

// Error returns the message with the package's prefix.
func (e *RedoError) Error() string { return "walredo: " + e.Message }

// stderrTailLines is how many of its last log lines a dead process's
// error quotes.
const stderrTailLines = 8

// call is one request in flight.
type call struct {
	done     chan struct{}
	sent     time.Time
	timedOut bool // the watchdog killed the process over this call
	page     []byte
	err      error
}

// process is one `postgres --single` serving the redo protocol.
type process struct {
	tenant  string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	log     zerolog.Logger
	timeout time.Duration

	// writeMu keeps writes whole and in the order of queue.
	writeMu sync.Mutex

	mu       sync.Mutex
	queue    []*call // requests written, oldest first
	dead     bool
	deathErr error
	killWhy  string
	closing  bool // close asked it to exit

	inflight   atomic.Int32
	onExit     func()        // called once the process is reaped
	exited     chan struct{} // closed once reaped and its calls failed
	stderrDone chan struct{}
	tailMu     sync.Mutex
	tail       []string
}

// processArgs are the server settings of a redo process: a small buffer
// pool (the module drops its pages after every request), no durability
// for the scratch cluster, and quiet logging.
func processArgs(dataDir, libDir string) []string {
	args := []string{"--single", "-D", dataDir, "-F"}
	for _, kv := range []string{
		"dynamic_library_path=" + libDir + ":$libdir",
		"shared_buffers=2MB",
		"max_connections=5",
		"max_prepared_transactions=0",
		"max_wal_senders=0",
		"fsync=off",
		"full_page_writes=off",
		"wal_log_hints=off",
		"log_line_prefix=",
		"log_min_messages=warning",
		"log_min_error_statement=panic",
		"log_checkpoints=off",
	} {
		args = append(args, "-c", kv)
	}
	return append(args, "postgres")
}

// startProcess starts a redo process in slot and waits for it to be ready.
func startProcess(ctx context.Context, binDir, libDir string, user *pgcluster.OSUser, s *slot, tenant string, timeout time.Duration, log zerolog.Logger, onExit func()) (*process, error) {
	cmd := exec.Command(filepath.Join(binDir, "postgres"), processArgs(s.dir, libDir)...)
	pgcluster.RunAs(cmd, user)
	cmd.Dir = s.dir
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// A redo process must not outlive zenith; its own process group keeps
	// a Ctrl-C at our terminal from reaching it behind our back.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres --single in %s: %w", s.dir, err)
	}
	p := &process{
		tenant:     tenant,
		cmd:        cmd,
		stdin:      stdin,
		stdout:     bufio.NewReaderSize(stdout, 64<<10),
		log:        log.With().Int("pid", cmd.Process.Pid).Logger(),
		timeout:    timeout,
		onExit:     onExit,
		exited:     make(chan struct{}),
		stderrDone: make(chan struct{}),
	}
	go p.readStderr(stderr)

	ready := make(chan error, 1)
	go func() { ready <- p.awaitReady() }()
	_, err = io.WriteString(stdin, serveStatement)
	if err == nil {
		select {
		case err = <-ready:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-p.stderrDone
		werr := cmd.Wait()
		return nil, fmt.Errorf("start walredo process in %s: %v (%v)%s", s.dir, err, werr, p.tailText())
	}
	go p.readReplies()
	go p.watchdog()
	p.log.Debug().Msg("walredo process ready")
	return p, nil
}

// awaitReady skips what the single-user backend prints before the module
// takes over.
func (p *process) awaitReady() error {
	for {
		line, err := p.stdout.ReadString('\n')
		if strings.HasSuffix(line, readyLine) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("no %q from the module: %w", strings.TrimSpace(readyLine), err)
		}
	}
}

// readStderr logs the process's output and keeps its last lines.
func (p *process) readStderr(r io.Reader) {
	defer close(p.stderrDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.tailMu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > stderrTailLines {
			p.tail = p.tail[1:]
		}
		p.tailMu.Unlock()
		ev := p.log.Debug()
		switch {
		case strings.Contains(line, "PANIC:"), strings.Contains(line, "FATAL:"):
			ev = p.log.Error()
		case strings.Contains(line, "WARNING:"):
			ev = p.log.Warn()
		}
		ev.Str("postgres", line).Msg("walredo process log")
	}
}

func (p *process) tailText() string {
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	if len(p.tail) == 0 {
		return ""
	}
	return "; it logged: " + strings.Join(p.tail, " | ")
}

// readReplies hands each reply to the oldest request in flight, until the
// process ends.
func (p *process) readReplies() {
	for {
		typ, body, err := readReply(p.stdout)
		if err != nil {
			p.exit(err)
			return
		}
		p.mu.Lock()
		var c *call
		if len(p.queue) > 0 {
			c = p.queue[0]
			p.queue = p.queue[1:]
		}
		p.mu.Unlock()
		if c == nil {
			p.exit(fmt.Errorf("protocol error: a reply of type %q without a request", typ))
			return
		}
		if typ == msgPage {
			c.page = body
		} else {
			c.err = &RedoError{Message: string(body)}
		}
		p.inflight.Add(-1)
		close(c.done)
	}
}

// exit reaps the process after its replies ended with err and fails every
// request still in flight.
func (p *process) exit(err error) {
	if !errors.Is(err, io.EOF) {
		_ = p.cmd.Process.Kill() // a protocol error: the process may be alive
	}
	<-p.stderrDone
	werr := p.cmd.Wait()
	p.mu.Lock()
	var why string
	switch {
	case p.killWhy != "":
		why = fmt.Sprintf("%s (%v)", p.killWhy, exitDesc(werr))
	case !errors.Is(err, io.EOF):
		why = fmt.Sprintf("%v; killed it", err)
	default:
		why = "exited: " + exitDesc(werr)
	}
	closing := p.closing && p.killWhy == ""
	if closing {
		p.deathErr = fmt.Errorf("%w: its process %d exited", ErrClosed, p.cmd.Process.Pid)
	} else {
		p.deathErr = fmt.Errorf("%w: pid %d for tenant %s %s%s", ErrProcessDied, p.cmd.Process.Pid, p.tenant, why, p.tailText())
	}
	p.dead = true
	queue := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, c := range queue {
		c.err = p.deathErr
		p.inflight.Add(-1)
		close(c.done)
	}
	if closing {
		p.log.Debug().Msg("walredo process exited")
	} else {
		p.log.Warn().Err(p.deathErr).Msg("walredo process ended")
	}
	p.onExit()
	close(p.exited)
}

// exitDesc describes how a process ended (Wait's error).
func exitDesc(werr error) string {
	if werr == nil {
		return "exit status 0"
	}
	return werr.Error()
}

// kill ends the process, saying why in the error its requests get.
func (p *process) kill(why string) {
	p.mu.Lock()
	if p.killWhy == "" {
		p.killWhy = why
	}
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
}

func (p *process) isDead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead
}

// do sends one request frame and waits for its reply. Requests from many
// goroutines are pipelined.
func (p *process) do(ctx context.Context, frame []byte) ([]byte, error) {
	c := &call{done: make(chan struct{}), sent: time.Now()}
	p.writeMu.Lock()
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		p.writeMu.Unlock()
		return nil, p.deathErr
	}
	p.queue = append(p.queue, c)
	p.inflight.Add(1)
	p.mu.Unlock()
	_, err := p.stdin.Write(frame)
	p.writeMu.Unlock()
	if err != nil {
		p.kill(fmt.Sprintf("writing a request: %v", err))
	}
	select {
	case <-c.done:
		if c.timedOut {
			return nil, fmt.Errorf("%w after %v: %v", ErrTimeout, p.timeout, c.err)
		}
		return c.page, c.err
	case <-ctx.Done():
		// The reply, when it comes, goes to c and is dropped.
		return nil, ctx.Err()
	}
}

// watchdog kills the process when the oldest request in flight has waited
// longer than the timeout: the process is stuck. One watchdog per process,
// rather than a timer per request, keeps requests cheap.
func (p *process) watchdog() {
	tick := time.NewTicker(max(p.timeout/8, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.exited:
			return
		case now := <-tick.C:
			p.mu.Lock()
			var stuck bool
			if len(p.queue) > 0 && now.Sub(p.queue[0].sent) > p.timeout {
				p.queue[0].timedOut = true
				stuck = true
			}
			p.mu.Unlock()
			if stuck {
				p.kill(fmt.Sprintf("killed after a request got no reply in %v", p.timeout))
			}
		}
	}
}

// close asks the process to exit (end of stdin) and kills it if it has not
// within grace.
func (p *process) close(grace time.Duration) {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.kill("killed: it did not exit after its input was closed")
		<-p.exited
	}
}
