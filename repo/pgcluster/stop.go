package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StopMode is one of PostgreSQL's shutdown modes (pg_ctl stop -m).
type StopMode int

// The shutdown modes and the signal each sends to the postmaster.
const (
	// StopSmart waits for every client to disconnect (SIGTERM).
	StopSmart StopMode = iota
	// StopFast rolls back open transactions, disconnects clients and
	// writes a shutdown checkpoint (SIGINT): a clean stop.
	StopFast
	// StopImmediate exits at once without a checkpoint (SIGQUIT); the next
	// start runs crash recovery.
	StopImmediate
)

func (m StopMode) String() string {
	switch m {
	case StopSmart:
		return "smart"
	case StopFast:
		return "fast"
	case StopImmediate:
		return "immediate"
	}
	return fmt.Sprintf("StopMode(%d)", int(m))
}

func (m StopMode) signal() (syscall.Signal, error) {
	switch m {
	case StopSmart:
		return syscall.SIGTERM, nil
	case StopFast:
		return syscall.SIGINT, nil
	case StopImmediate:
		return syscall.SIGQUIT, nil
	}
	return 0, fmt.Errorf("unknown stop mode %d", int(m))
}

// ErrNotRunning is returned by PID when no postmaster serves the data
// directory.
var ErrNotRunning = errors.New("postgres is not running")

// PID returns the pid of the postmaster serving the data directory, read
// back from postmaster.pid and verified: it must be >= 1 and be the process
// this Cluster started or, for a server started by another zenith process,
// a live postgres process whose working directory is the data directory.
// A stale postmaster.pid (no such process) gives ErrNotRunning.
func (c *Cluster) PID() (int, error) {
	path := filepath.Join(c.opts.DataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: no %s", ErrNotRunning, path)
	}
	if err != nil {
		return 0, fmt.Errorf("read postmaster pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid < 1 {
		return 0, fmt.Errorf("%s: first line %q is not a pid >= 1: remove the file if no postgres runs there", path, first)
	}
	c.mu.Lock()
	proc := c.proc
	c.mu.Unlock()
	if proc != nil {
		if proc.Pid != pid {
			return 0, fmt.Errorf("%s names pid %d, but this process started postgres as pid %d: not signalling either", path, pid, proc.Pid)
		}
		return pid, nil
	}
	if !Alive(pid) {
		return 0, fmt.Errorf("%w: stale %s (pid %d is gone)", ErrNotRunning, path, pid)
	}
	if err := c.isOurPostmaster(pid); err != nil {
		return 0, fmt.Errorf("%s names pid %d: %w", path, pid, err)
	}
	return pid, nil
}

// isOurPostmaster checks, through /proc, that pid runs a postgres binary
// in the cluster's data directory (the postmaster chdirs into it).
func (c *Cluster) isOurPostmaster(pid int) error {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return fmt.Errorf("cannot check that it is our postgres: %w", err)
	}
	want, err := filepath.EvalSymlinks(c.opts.DataDir)
	if err != nil {
		return fmt.Errorf("resolve data directory: %w", err)
	}
	if cwd != want {
		return fmt.Errorf("it runs in %s, not in the data directory %s: not our postgres", cwd, want)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return fmt.Errorf("cannot check that it is our postgres: %w", err)
	}
	if filepath.Base(exe) != "postgres" {
		return fmt.Errorf("it runs %s, not postgres", exe)
	}
	return nil
}

// Stop signals the postmaster (found and verified by PID) to shut down in
// the given mode and waits, until ctx is done, for it to exit. Stopping a
// cluster that is not running is not an error.
func (c *Cluster) Stop(ctx context.Context, mode StopMode) error {
	sig, err := mode.signal()
	if err != nil {
		return err
	}
	c.mu.Lock()
	proc, exited := c.proc, c.exited
	c.mu.Unlock()
	pid, err := c.PID()
	switch {
	case errors.Is(err, ErrNotRunning) && proc != nil:
		// Started by us but not yet written postmaster.pid: it is ours.
		pid = proc.Pid
	case errors.Is(err, ErrNotRunning):
		c.log.Debug().Msg("postgres not running, nothing to stop")
		return nil
	case err != nil:
		return fmt.Errorf("stop postgres: %w", err)
	}
	log := c.log.With().Int("pid", pid).Str("mode", mode.String()).Logger()
	log.Debug().Msg("stopping postgres")
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("signal postgres (pid %d): %w", pid, err)
	}
	if proc != nil {
		select {
		case <-exited:
		case <-ctx.Done():
			return fmt.Errorf("postgres (pid %d) did not stop (%s) in time: %w; try mode immediate", pid, mode, ctx.Err())
		}
	} else if err := WaitGone(ctx, pid); err != nil {
		return fmt.Errorf("postgres (pid %d) did not stop (%s) in time: %w; try mode immediate", pid, mode, err)
	}
	log.Info().Msg("postgres stopped")
	return nil
}

// Alive reports whether pid names a process that has not exited. A
// zombie has exited once it is alone in its thread group: the main
// thread of a killed multi-threaded process turns zombie while its other
// threads may still be exiting, and until the last has, the process's
// files are open (a listening socket: a new server on its port would
// fail with "address already in use").
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		return err == nil && len(tasks) > 1
	}
	return true
}

// WaitGone polls until pid has exited or ctx is done.
func WaitGone(ctx context.Context, pid int) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for Alive(pid) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
