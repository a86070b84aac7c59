package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// The modes of a compute node's data directory.
const (
	// ModeEager: every relation file was copied from the basebackup.
	ModeEager = "eager"
	// ModeLazy: relation files are served through FUSE by `zenith pg
	// fuse`, their blocks fetched from the page server on first read.
	ModeLazy = "lazy"
)

// Defaults of a lazy node (node.toml's lazy_cache_bytes and
// lazy_fetch_timeout override them; lazy_prewarm_bytes defaults to the
// cache's size: more would evict what the prewarm fetched).
const (
	defaultLazyCacheBytes   = 1 << 30
	defaultLazyFetchTimeout = 20 * time.Second
	// lazyReadAhead is how many blocks a sequential read fetches ahead.
	lazyReadAhead = 128
	// crashStopTimeout bounds the wait for PostgreSQL to exit after its
	// FUSE server died.
	crashStopTimeout = 15 * time.Second
	// fuseReadyPoll bounds pg start's wait for a change of the mount
	// table (mountEvents) while it waits for the FUSE server's mount,
	// so that the server's exit is seen.
	fuseReadyPoll = 20 * time.Millisecond
)

// errLazyTablespaces is why a node with relations in tablespaces is
// eager: their files live outside the data directory, beyond the mount.
var errLazyTablespaces = errors.New("the branch has relations in tablespaces, which lazy mode does not serve yet")

// lazyUnavailable says why this repository's nodes cannot be lazy here
// (FUSE cannot be mounted), or "" if they can.
func (e *Env) lazyUnavailable() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("lazy mode mounts FUSE directly, which needs root (zenith runs as uid %d)", os.Geteuid())
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("lazy mode needs /dev/fuse: %v", err)
	}
	f.Close()
	return ""
}

// lazyDir holds a lazy node's backing files: the data directory as the
// basebackup gave it (pgdata/, served at the node's DataDir) and the
// manifest of its lazily fetched files.
func (n *Node) lazyDir() string      { return filepath.Join(n.dir, "lazy") }
func (n *Node) lazyBacking() string  { return filepath.Join(n.lazyDir(), "pgdata") }
func (n *Node) lazyManifest() string { return filepath.Join(n.lazyDir(), "manifest") }
func (n *Node) lazyWAL() string      { return filepath.Join(n.lazyDir(), "pg_wal") }

// IsLazy reports whether the node's data directory is served lazily.
func (n *Node) IsLazy() bool { return n.Mode == ModeLazy }

// fuseDaemon is the node's `zenith pg fuse` process.
func (n *Node) fuseDaemon(e *Env) *Daemon {
	cache := n.LazyCacheBytes
	if cache == 0 {
		cache = defaultLazyCacheBytes
	}
	prewarm := n.LazyPrewarmBytes
	switch {
	case prewarm == 0:
		prewarm = cache
	case prewarm < 0:
		prewarm = 0
	}
	timeout := time.Duration(n.LazyFetchTimeout)
	if timeout == 0 {
		timeout = defaultLazyFetchTimeout
	}
	return &Daemon{
		Name: "FUSE server of compute node " + n.Name,
		Args: []string{"pg", "fuse", "--dir", n.dir},
		Extra: append([]string{"--pageserver", e.Pageserver().Addr, "--tenant", n.Tenant.String(), "--timeline", n.Timeline.String(),
			"--cache-bytes", strconv.FormatInt(cache, 10), "--fetch-timeout", timeout.String(),
			"--read-ahead", strconv.Itoa(lazyReadAhead), "--prewarm-bytes", strconv.FormatInt(prewarm, 10)}, e.lazyClientArgs(n)...),
		PidPath: filepath.Join(n.dir, "fuse.pid"),
		LogPath: filepath.Join(n.dir, "fuse.log"),
		Ready: func(context.Context) error {
			if !isMounted(n.DataDir()) {
				return errors.New("not mounted yet")
			}
			return nil
		},
		// The mount comes tens of milliseconds after the process
		// starts, and the compute's start waits for it: for the mount
		// table's change, and at least every fuseReadyPoll for an
		// exit.
		ReadyEvents: mountEvents,
		ReadyPoll:   fuseReadyPoll,
	}
}

// mountEvents is a Daemon.ReadyEvents of the mount table: the kernel
// reports a change of it (any mount or unmount in this mount namespace)
// to a poll of /proc/self/mountinfo as POLLPRI, from the file's open
// on (mounts_poll). Waiting for that rather than reading the table
// every fuseReadyPoll took most of pg start's own CPU in the mount
// phase: a wake-up and a read of the table every 2 ms.
func mountEvents() (func(time.Duration), func(), error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, err
	}
	wait := func(d time.Duration) {
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLPRI}}
		_, _ = unix.Poll(fds, int(d.Milliseconds()))
	}
	return wait, func() { f.Close() }, nil
}

// buildLazyDataDir builds a lazy node's backing directory from a lazy
// basebackup at lsn; the mount comes at start (mountLazy).
func (e *Env) buildLazyDataDir(ctx context.Context, n *Node, lsn pgdata.LSN) error {
	backing, data := n.lazyBacking(), n.DataDir()
	phases := newPhaseTimer(e.Log.With().Str("op", "lazy data directory").Str("node", n.Name).Logger())
	// PostgreSQL's OS user must reach the data directory, as it does
	// the node's directory (PrepareDir checks).
	if err := os.Mkdir(n.lazyDir(), 0o755); err != nil {
		return fmt.Errorf("create lazy data directory: %w", err)
	}
	if err := os.Mkdir(backing, 0o700); err != nil {
		return fmt.Errorf("create lazy data directory: %w", err)
	}
	if err := e.extractBasebackup(ctx, n, lsn, true, backing); err != nil {
		return err
	}
	phases.done("basebackup")
	mpath := filepath.Join(backing, api.LazyManifestName)
	text, err := os.ReadFile(mpath)
	if err != nil {
		return fmt.Errorf("lazy basebackup: %w", err)
	}
	m, err := api.ParseLazyManifest(text)
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, "pg_tblspc/") {
			return errLazyTablespaces
		}
	}
	if err := os.Rename(mpath, n.lazyManifest()); err != nil {
		return err
	}
	if err := writeComputeConfig(n, e, backing); err != nil {
		return err
	}
	// The compute's WAL lives beside the mount, not in it: pg_wal is a
	// link (as initdb --waldir makes) to the node's own directory, so
	// PostgreSQL's WAL writes and its walsenders' reads never pass
	// through the FUSE server. In a bulk load that is half the bytes
	// written. There is nothing to fetch in the WAL.
	wal, err := filepath.Abs(n.lazyWAL())
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(backing, "pg_wal"), wal); err != nil {
		return fmt.Errorf("lazy data directory: move pg_wal out of the mount: %w", err)
	}
	if err := os.Symlink(wal, filepath.Join(backing, "pg_wal")); err != nil {
		return fmt.Errorf("lazy data directory: link pg_wal: %w", err)
	}
	phases.done("config")
	user, err := pgcluster.ServerUser()
	if err != nil {
		return err
	}
	for _, d := range []string{backing, data, n.lazyWAL()} {
		if err := pgcluster.PrepareDir(d, user); err != nil {
			return err
		}
	}
	if _, err := os.Stat(n.TablespacesDir()); err == nil {
		if err := pgcluster.PrepareDir(n.TablespacesDir(), user); err != nil {
			return err
		}
	}
	phases.done("ownership")
	n.Mode = ModeLazy
	return nil
}

// mountLazy starts the node's FUSE server and waits for its mount. With
// token auth it first mints the node's token (writeNodeToken).
func (e *Env) mountLazy(ctx context.Context, n *Node) error {
	if e.Config.Security.Auth {
		if err := e.writeNodeToken(n); err != nil {
			return err
		}
	}
	return n.fuseDaemon(e).Start(ctx, io.Discard)
}

// unmountLazy stops the node's FUSE server once PostgreSQL is gone: it
// unmounts and exits on SIGTERM. A mount left behind (the server was
// killed) is unmounted here, lazily if it is still busy. The node's
// token goes with it.
func (e *Env) unmountLazy(ctx context.Context, n *Node) error {
	d := n.fuseDaemon(e)
	if err := d.Stop(ctx, false, io.Discard); err != nil {
		if kerr := d.Stop(ctx, true, io.Discard); kerr != nil {
			return err
		}
	}
	if err := unmount(n.DataDir()); err != nil {
		return err
	}
	return removeNodeToken(n)
}

// unmount unmounts the FUSE file system at dir if one is mounted there;
// if it is busy, it detaches it (MNT_DETACH), which ends it once the last
// process using it lets go.
func unmount(dir string) error {
	if !isMounted(dir) {
		return nil
	}
	if err := unix.Unmount(dir, 0); err == nil {
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && isMounted(dir) {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// checkLazy finds a lazy node whose FUSE server died (a compute crash:
// PostgreSQL cannot read its files) and cleans up after it: PostgreSQL
// is stopped, the mount removed, and the node marked for a rebuild. It
// reports whether it had to.
func (e *Env) checkLazy(ctx context.Context, n *Node) (bool, error) {
	if !n.IsLazy() {
		return false, nil
	}
	d := n.fuseDaemon(e)
	_, err := d.PID(io.Discard)
	alive := err == nil
	mounted := isMounted(n.DataDir())
	if alive == mounted {
		// Both: healthy. Neither: stopped, or cleaned up already.
		return false, nil
	}
	if pid := postmasterPID(filepath.Join(n.lazyBacking(), "postmaster.pid")); pid > 0 {
		fmt.Fprintf(e.Progress, "compute node %s: its FUSE server is gone: stopping its PostgreSQL (pid %d)\n", n.Name, pid)
		_ = syscall.Kill(pid, syscall.SIGQUIT)
		wctx, cancel := context.WithTimeout(ctx, crashStopTimeout)
		err := pgcluster.WaitGone(wctx, pid)
		cancel()
		if err != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			wctx, cancel := context.WithTimeout(ctx, crashStopTimeout)
			err = pgcluster.WaitGone(wctx, pid)
			cancel()
			if err != nil {
				return true, fmt.Errorf("compute node %s: PostgreSQL (pid %d) does not exit: %w", n.Name, pid, err)
			}
		}
	}
	if err := e.unmountLazy(ctx, n); err != nil {
		return true, err
	}
	n.CleanLSN, n.Fresh = 0, false
	if err := n.save(); err != nil {
		return true, err
	}
	fmt.Fprintf(e.Progress, "compute node %s crashed (its FUSE server died); the next start rebuilds it\n", n.Name)
	return true, nil
}

// postmasterPID reads the postmaster's pid from postmaster.pid, 0 if
// there is none or it is not running.
func postmasterPID(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || pid < 1 || !pgcluster.Alive(pid) {
		return 0
	}
	return pid
}

// isMounted reports whether a file system is mounted at dir.
func isMounted(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == abs {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DiskUse is the disk space the node's files take (allocated blocks:
// a lazy node's holes take none), its mount excluded.
func (n *Node) DiskUse() int64 {
	var total int64
	_ = filepath.WalkDir(n.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p == n.DataDir() && n.IsLazy() {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}

// modeName is the node's mode as pg list shows it.
func (n *Node) modeName() string {
	if n.Mode == "" {
		return ModeEager
	}
	return n.Mode
}

// firstLine is the first line of err's message (a failed start carries
// the end of a log after it).
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
