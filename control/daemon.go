package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// Timeouts of background process management.
const (
	// daemonReadyTimeout bounds how long start waits for a process to
	// answer (a page server may load many tenants first).
	daemonReadyTimeout = 60 * time.Second
	// daemonStopTimeout bounds how long stop waits after SIGTERM.
	daemonStopTimeout = 60 * time.Second
)

// Daemon is a background zenith process, `zenith ARGS... EXTRA...`, with
// its pidfile and log in the repository directory: the page server or a
// safekeeper, run by `zenith start` and stopped by `zenith stop`.
type Daemon struct {
	// Name is what messages call it ("page server", "safekeeper 2").
	Name string
	// Args identify the process (see Pidfile.Args): ROLE run -D DIR.
	Args []string
	// Extra are further arguments that do not identify it.
	Extra []string
	// PidPath and LogPath are its pidfile and log file.
	PidPath, LogPath string
	// Ready reports whether the process answers.
	Ready func(ctx context.Context) error
	// ReadyPoll is how often Start asks Ready; 0 means
	// defaultReadyPoll. A cheap Ready (a look at the mount table) can
	// be asked every few milliseconds.
	ReadyPoll time.Duration
	// ReadyEvents, if set, is a source of wake-ups for the wait for
	// Ready, opened once before its first call: wait blocks until Ready
	// may have changed or at most for the given time, and close ends
	// it. With one, Start waits for the event (ReadyPoll then bounds
	// the wait, so that an exit is still seen) instead of asking Ready
	// every ReadyPoll. Without one, or if it fails, Start polls.
	ReadyEvents func() (wait func(time.Duration), close func(), err error)
	// Environ, if set, is what the process gets in its environment on top
	// of zenith's own (its token, which must not be in its arguments).
	Environ func() ([]string, error)
}

func (d *Daemon) pidfile() Pidfile { return Pidfile{Path: d.PidPath, Args: d.Args} }

// PID returns the pid of the running process, or an error wrapping
// ErrNotRunning. A stale pidfile is removed and reported on notes.
func (d *Daemon) PID(notes io.Writer) (int, error) {
	pid, err := d.pidfile().Read()
	var stale *StalePidfileError
	if errors.As(err, &stale) {
		fmt.Fprintf(notes, "%s: %v\n", d.Name, err)
		return 0, fmt.Errorf("%s: %w (stale pidfile removed)", d.Name, ErrNotRunning)
	}
	return pid, err
}

// Start starts the process unless it runs already, and waits until it
// answers. It reports what it did on notes. A process that does not come
// up is killed, and the error carries the end of its log.
func (d *Daemon) Start(ctx context.Context, notes io.Writer) error {
	pid, err := d.PID(notes)
	if err == nil {
		fmt.Fprintf(notes, "%s already running (pid %d)\n", d.Name, pid)
		return d.waitReady(ctx, nil)
	}
	if !errors.Is(err, ErrNotRunning) {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start %s: find the zenith binary: %w", d.Name, err)
	}
	logf, err := os.OpenFile(d.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", d.Name, err)
	}
	defer logf.Close()
	st, err := logf.Stat()
	if err != nil {
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	logStart := st.Size()
	// Not CommandContext: the process outlives this command.
	cmd := exec.Command(exe, append(append([]string{}, d.Args...), d.Extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if d.Environ != nil {
		env, err := d.Environ()
		if err != nil {
			return fmt.Errorf("start %s: %w", d.Name, err)
		}
		cmd.Env = append(os.Environ(), env...)
	}
	// Its own session: a Ctrl-C at the terminal that ran zenith start must
	// not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // how it exited is in its log
		close(exited)
	}()
	fail := func(err error) error {
		_ = cmd.Process.Kill()
		<-exited
		_ = d.pidfile().Remove()
		return fmt.Errorf("start %s: %w\n%s ends with:\n%s", d.Name, err, d.LogPath, logTail(d.LogPath, logStart, 20))
	}
	if err := d.pidfile().Write(cmd.Process.Pid); err != nil {
		return fail(err)
	}
	if err := d.waitReady(ctx, exited); err != nil {
		return fail(err)
	}
	fmt.Fprintf(notes, "%s started (pid %d, log %s)\n", d.Name, cmd.Process.Pid, d.LogPath)
	return nil
}

// defaultReadyPoll is how often Start asks a process whether it answers.
const defaultReadyPoll = 20 * time.Millisecond

// waitReady polls Ready every ReadyPoll until it succeeds, the process
// exits (exited closes; nil when it was not started here), or
// daemonReadyTimeout.
func (d *Daemon) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, daemonReadyTimeout)
	defer cancel()
	poll := d.ReadyPoll
	if poll == 0 {
		poll = defaultReadyPoll
	}
	var wait func(time.Duration)
	if d.ReadyEvents != nil {
		w, closeEvents, err := d.ReadyEvents()
		if err == nil {
			wait = w
			defer closeEvents()
		}
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		err := d.Ready(ctx)
		if err == nil {
			return nil
		}
		if wait != nil {
			wait(poll)
			select {
			case <-exited:
				return errors.New("it exited during start-up")
			case <-ctx.Done():
				return fmt.Errorf("not answering after %v: %w", daemonReadyTimeout, err)
			default:
			}
			continue
		}
		select {
		case <-exited:
			return errors.New("it exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("not answering after %v: %w", daemonReadyTimeout, err)
		case <-tick.C:
		}
	}
}

// Stop stops the process if it runs: SIGTERM and a wait for it to exit
// cleanly, or with immediate SIGKILL. It reports what it did on notes.
func (d *Daemon) Stop(ctx context.Context, immediate bool, notes io.Writer) error {
	pid, err := d.PID(notes)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	sig := syscall.SIGTERM
	if immediate {
		sig = syscall.SIGKILL
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", d.Name, pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, daemonStopTimeout)
	defer cancel()
	if err := pgcluster.WaitGone(ctx, pid); err != nil {
		return fmt.Errorf("%s (pid %d) did not stop within %v: %w; zenith stop --immediate kills it", d.Name, pid, daemonStopTimeout, err)
	}
	if err := d.pidfile().Remove(); err != nil {
		return err
	}
	fmt.Fprintf(notes, "%s stopped (pid %d)\n", d.Name, pid)
	return nil
}

// logTail returns the last n lines of the file at path from offset from.
func logTail(path string, from int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if from <= int64(len(b)) {
		b = b[from:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
