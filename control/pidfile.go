package control

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/vfs"
)

// ErrNotRunning is returned (wrapped) when a background process has no
// pidfile: it is not running, as far as zenith knows.
var ErrNotRunning = errors.New("not running")

// StalePidfileError is returned when a pidfile names no live process of
// ours: the file was removed and the pid must not be signalled.
type StalePidfileError struct {
	Path   string
	Reason string
}

func (e *StalePidfileError) Error() string {
	return fmt.Sprintf("stale pidfile %s (%s): removed it", e.Path, e.Reason)
}

// Pidfile is the file that holds the pid of a background zenith process,
// together with what that process must be running: `zenith ARGS...` (its
// command line may continue after ARGS). A pid read back is trusted only if
// it is >= 1 and /proc/<pid>/cmdline still names that command, so a pid the
// kernel has reused for another process is never signalled.
type Pidfile struct {
	Path string
	// Program is the file name of the process's program; empty means any:
	// zenith's background processes may run under another name than the
	// binary that stops them (a second build, a renamed copy), and their
	// Args, which hold the absolute path of their directory, say which
	// process they are. Checking the name too once made `zenith stop`
	// take a running page server's pidfile for stale, remove it and leave
	// the page server running.
	Program string
	// Args identify the process: its arguments after the program name,
	// e.g. ["pageserver", "run", "-D", "/abs/dir"].
	Args []string
}

// Write records pid.
func (p Pidfile) Write(pid int) error {
	_, err := vfs.WriteFileAtomic(vfs.Default, p.Path, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	return err
}

// Remove removes the pidfile; a missing one is not an error.
func (p Pidfile) Remove() error {
	if err := os.Remove(p.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pidfile: %w", err)
	}
	return nil
}

// Read returns the pid of the running process. No pidfile gives
// ErrNotRunning; a pidfile that does not name a live process running Args
// is removed and gives a *StalePidfileError.
func (p Pidfile) Read() (int, error) {
	b, err := os.ReadFile(p.Path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: no %s", ErrNotRunning, p.Path)
	}
	if err != nil {
		return 0, fmt.Errorf("read pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		return 0, p.stale(fmt.Sprintf("%q is not a pid >= 1", strings.TrimSpace(string(b))))
	}
	if !pgcluster.Alive(pid) {
		return 0, p.stale(fmt.Sprintf("pid %d is gone", pid))
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if errors.Is(err, os.ErrNotExist) {
		return 0, p.stale(fmt.Sprintf("pid %d is gone", pid))
	}
	if err != nil {
		return 0, fmt.Errorf("pidfile %s names pid %d, and its command line cannot be checked: %w", p.Path, pid, err)
	}
	if !p.matches(cmdline) {
		return 0, p.stale(fmt.Sprintf("pid %d is now another process: %s", pid, printable(cmdline)))
	}
	return pid, nil
}

func (p Pidfile) stale(reason string) error {
	if err := p.Remove(); err != nil {
		return fmt.Errorf("stale pidfile %s (%s), and %w", p.Path, reason, err)
	}
	return &StalePidfileError{Path: p.Path, Reason: reason}
}

// matches reports whether a /proc cmdline (NUL-separated arguments) is
// zenith running p.Args.
func (p Pidfile) matches(cmdline []byte) bool {
	argv := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	if len(argv) < 1+len(p.Args) || (p.Program != "" && filepath.Base(argv[0]) != p.Program) {
		return false
	}
	for i, a := range p.Args {
		if argv[1+i] != a {
			return false
		}
	}
	return true
}

// printable shows a /proc cmdline as a shell-like line.
func printable(cmdline []byte) string {
	s := string(bytes.TrimRight(cmdline, "\x00"))
	s = strings.ReplaceAll(s, "\x00", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
