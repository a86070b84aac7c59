package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/walredo"
)

// checkStatus is how a doctor check came out.
type checkStatus string

const (
	checkOK      checkStatus = "ok"
	checkWarning checkStatus = "warning" // works, but not as well as it could
	checkMissing checkStatus = "missing" // zenith cannot run without it
)

// checkResult is one line of zenith doctor.
type checkResult struct {
	Name   string
	Status checkStatus
	Detail string
	// Fix is the command that installs or repairs what is missing.
	Fix string
}

// doctor holds what the checks look at.
type doctor struct {
	pgBin    string // --pg-bin, or the repository's pg_bin_dir
	binDir   string // the PostgreSQL 15 found, once checked
	env      *Env   // the repository, when there is one
	module   string // walredo_module of the repository's page server
	progress io.Writer
}

// DoctorCommand is `zenith doctor`.
func DoctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that this machine has what zenith needs, and say how to install what is missing",
		Description: `Checks, one line each (ok, warning or missing):
  postgresql    PostgreSQL 15's programs: where, and which version
  postgres user the OS user PostgreSQL runs as when zenith runs as root
  redo module   the WAL redo module built into zenith loads in that PostgreSQL
                (runs initdb and a single-user postgres in a temporary directory)
  fuse          whether computes can read pages lazily through FUSE, and why not
  ports         the repository's listeners (or the defaults) are free or ours
  disk          free space where the repository is
  clock         the system clock is plausible and synchronized
For each missing piece it prints the command that installs it. The exit
status is 1 when a required piece is missing.

It reads the repository ($ZENITH_REPO_DIR or ./.zenith) when there is one,
for pg_bin_dir, the listeners and walredo_module; --pg-bin overrides.

Examples:
  zenith doctor
  zenith doctor --pg-bin /opt/postgresql-15/bin`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pg-bin", Usage: "look for PostgreSQL 15's programs only in `DIR`"},
		},
		Action: runDoctor,
	}
}

func runDoctor(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("doctor takes no arguments (see zenith doctor --help)")
	}
	d := &doctor{pgBin: c.String("pg-bin"), progress: c.App.ErrWriter}
	if e, err := openEnv(c); err == nil {
		d.env = e
		if d.pgBin == "" {
			d.pgBin = e.Config.PGBinDir
		}
		if cfg, err := pageserver.LoadConfig(filepath.Join(e.PageserverDir(), pageserver.ConfigFileName)); err == nil {
			d.module = cfg.WalredoModule
		}
	}
	checks := []func(context.Context) []checkResult{
		d.checkPostgres, d.checkServerUser, d.checkRedoModule, d.checkFUSE, d.checkPorts, d.checkDisk, d.checkClock,
	}
	missing := 0
	w := c.App.Writer
	for _, check := range checks {
		for _, r := range check(c.Context) {
			fmt.Fprintf(w, "%-8s %-14s %s\n", r.Status, r.Name, r.Detail)
			if r.Fix != "" {
				fmt.Fprintf(w, "%-8s %-14s fix: %s\n", "", "", r.Fix)
			}
			if r.Status == checkMissing {
				missing++
			}
		}
	}
	if missing > 0 {
		return cli.Exit(fmt.Sprintf("doctor: %d required piece(s) missing", missing), 1)
	}
	fmt.Fprintln(w, "zenith can run here")
	return nil
}

// installPostgres is the command that installs PostgreSQL 15 on Debian
// and Ubuntu (elsewhere: https://www.postgresql.org/download/linux/).
const installPostgres = "apt-get install postgresql-15   (Debian 12; elsewhere add the PGDG repository: https://www.postgresql.org/download/linux/)"

func (d *doctor) checkPostgres(ctx context.Context) []checkResult {
	dir, err := pgcluster.FindBinDir(ctx, d.pgBin)
	if err != nil {
		fix := installPostgres
		if d.pgBin != "" {
			fix = "point --pg-bin (or pg_bin_dir in config.toml) at PostgreSQL 15's bin directory, or " + installPostgres
		}
		return []checkResult{{Name: "postgresql", Status: checkMissing, Detail: err.Error(), Fix: fix}}
	}
	d.binDir = dir
	v, err := pgcluster.Version(ctx, dir)
	if err != nil {
		return []checkResult{{Name: "postgresql", Status: checkMissing, Detail: err.Error(), Fix: installPostgres}}
	}
	return []checkResult{{Name: "postgresql", Status: checkOK, Detail: fmt.Sprintf("%s: %s", dir, v.Text)}}
}

func (d *doctor) checkServerUser(context.Context) []checkResult {
	u, err := pgcluster.ServerUser()
	switch {
	case err != nil:
		return []checkResult{{Name: "postgres user", Status: checkMissing, Detail: err.Error(),
			Fix: "apt-get install postgresql-15 (creates it), or: useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres"}}
	case u == nil:
		return []checkResult{{Name: "postgres user", Status: checkOK, Detail: fmt.Sprintf("not needed: zenith runs as uid %d, and PostgreSQL runs as that user", os.Geteuid())}}
	default:
		return []checkResult{{Name: "postgres user", Status: checkOK, Detail: fmt.Sprintf("%s (uid %d) runs PostgreSQL, since zenith runs as root", u.Name, u.UID)}}
	}
}

func (d *doctor) checkRedoModule(ctx context.Context) []checkResult {
	const name = "redo module"
	m, err := walredo.FindModule(d.module)
	if err != nil {
		fix := "scripts/build in a zenith checkout, or a release binary"
		return []checkResult{{Name: name, Status: checkMissing, Detail: err.Error(), Fix: fix}}
	}
	if d.binDir == "" {
		return []checkResult{{Name: name, Status: checkMissing, Detail: fmt.Sprintf("built for %s; not tried: no PostgreSQL 15 found", m.Build), Fix: installPostgres}}
	}
	fmt.Fprintf(d.progress, "doctor: loading the WAL redo module into %s/postgres (initdb in a temporary directory)...\n", d.binDir)
	tmp, err := os.MkdirTemp("", "zenith-doctor-")
	if err != nil {
		return []checkResult{{Name: name, Status: checkMissing, Detail: err.Error()}}
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // the postgres OS user works inside
		return []checkResult{{Name: name, Status: checkMissing, Detail: err.Error()}}
	}
	cfg := walredo.DefaultConfig()
	cfg.Dir, cfg.BinDir, cfg.Extension = filepath.Join(tmp, "walredo"), d.binDir, d.module
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	mgr, err := walredo.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		var ie *walredo.IncompatibleModuleError
		fix := "run scripts/build against this PostgreSQL, or use a zenith release built for it"
		if errors.As(err, &ie) && ie.Module.Major() != 0 {
			fix = fmt.Sprintf("apt-get install postgresql-%d and use its programs (--pg-bin /usr/lib/postgresql/%d/bin)", ie.Module.Major(), ie.Module.Major())
		}
		return []checkResult{{Name: name, Status: checkMissing, Detail: err.Error(), Fix: fix}}
	}
	mgr.Close()
	cache, _ := walredo.ModuleCacheDir()
	return []checkResult{{Name: name, Status: checkOK, Detail: fmt.Sprintf("%s module built for %s loads (cached under %s)", m.Source, m.Build, cache)}}
}

func (d *doctor) checkFUSE(context.Context) []checkResult {
	const name = "fuse"
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		return []checkResult{{Name: name, Status: checkWarning,
			Detail: "no /dev/fuse: computes get their pages eagerly in the basebackup (lazy reads need FUSE)",
			Fix:    "modprobe fuse; in a container: docker run --device /dev/fuse --cap-add SYS_ADMIN"}}
	}
	if os.Geteuid() == 0 {
		return []checkResult{{Name: name, Status: checkOK, Detail: fmt.Sprintf("/dev/fuse (mode %04o) and root: lazy page reads can mount with DirectMount", st.Mode().Perm())}}
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return []checkResult{{Name: name, Status: checkWarning,
			Detail: fmt.Sprintf("/dev/fuse (mode %04o) cannot be opened by uid %d (%v): computes get their pages eagerly", st.Mode().Perm(), os.Geteuid(), errors.Unwrap(err)),
			Fix:    "run zenith as root, or chmod 0666 /dev/fuse and apt-get install fuse3"}}
	}
	f.Close()
	return []checkResult{{Name: name, Status: checkOK, Detail: fmt.Sprintf("/dev/fuse (mode %04o) opens for uid %d", st.Mode().Perm(), os.Geteuid())}}
}

// listener is an address a zenith role listens on, and the role.
type listener struct {
	name, addr string
	d          *Daemon // the repository's daemon behind it, if any
}

func (d *doctor) listeners() []listener {
	if d.env == nil {
		def := DefaultConfig()
		return []listener{
			{name: "page service", addr: def.Pageserver.ListenPG},
			{name: "page server HTTP", addr: def.Pageserver.ListenHTTP},
		}
	}
	e := d.env
	var ls []listener
	if e.Config.Pageserver.Local {
		ps := e.pageserverDaemon()
		ls = append(ls, listener{"page service", e.Config.Pageserver.ListenPG, ps}, listener{"page server HTTP", e.Config.Pageserver.ListenHTTP, ps})
	}
	for i, sk := range e.Config.SafekeeperList() {
		if !sk.Local {
			continue
		}
		d := e.safekeeperDaemon(i + 1)
		ls = append(ls, listener{fmt.Sprintf("safekeeper %d", i+1), sk.ListenPG, d},
			listener{fmt.Sprintf("safekeeper %d HTTP", i+1), sk.ListenHTTP, d})
	}
	return ls
}

func (d *doctor) checkPorts(context.Context) []checkResult {
	var out []checkResult
	for _, l := range d.listeners() {
		name := "port " + l.addr
		ln, err := net.Listen("tcp", l.addr)
		if err == nil {
			ln.Close()
			out = append(out, checkResult{Name: "ports", Status: checkOK, Detail: fmt.Sprintf("%s free for the %s", l.addr, l.name)})
			continue
		}
		if l.d != nil {
			if pid, perr := l.d.pidfile().Read(); perr == nil {
				out = append(out, checkResult{Name: "ports", Status: checkOK, Detail: fmt.Sprintf("%s in use by the running %s (pid %d)", l.addr, l.d.Name, pid)})
				continue
			}
		}
		r := checkResult{Name: "ports", Status: checkWarning, Detail: fmt.Sprintf("%s for the %s is taken by another program: %v", l.addr, l.name, errors.Unwrap(err)),
			Fix: "zenith init --pageserver-port/--http-port/--safekeeper-port PORT, or stop the program (ss -ltnp 'sport = :PORT')"}
		if d.env != nil {
			// The repository is set up for this port: zenith start fails.
			r.Status = checkMissing
			r.Fix = "stop the program holding it (ss -ltnp), or change " + name + " in " + filepath.Join(d.env.Dir, ConfigFileName)
		}
		out = append(out, r)
	}
	return out
}

// Disk space below which the repository cannot work, and below which it
// soon will not.
const (
	diskMissingBelow = 256 << 20
	diskWarnBelow    = 2 << 30
)

func (d *doctor) checkDisk(context.Context) []checkResult {
	dir, err := RepoDir()
	if err != nil {
		return []checkResult{{Name: "disk", Status: checkMissing, Detail: err.Error()}}
	}
	// The repository or the nearest directory above it that exists.
	for {
		if _, err := os.Stat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) || dir == filepath.Dir(dir) {
			break
		}
		dir = filepath.Dir(dir)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return []checkResult{{Name: "disk", Status: checkWarning, Detail: fmt.Sprintf("statfs %s: %v", dir, err)}}
	}
	free := int64(st.Bavail) * st.Bsize
	detail := fmt.Sprintf("%s free of %s at %s", formatBytes(free), formatBytes(int64(st.Blocks)*st.Bsize), dir)
	switch {
	case free < diskMissingBelow:
		return []checkResult{{Name: "disk", Status: checkMissing, Detail: detail, Fix: "free space there, or set ZENITH_REPO_DIR to a larger file system"}}
	case free < diskWarnBelow:
		return []checkResult{{Name: "disk", Status: checkWarning, Detail: detail + " (layers and WAL grow with every write)"}}
	}
	return []checkResult{{Name: "disk", Status: checkOK, Detail: detail}}
}

// earliestPlausible is a date before this code existed: a clock before it
// is wrong (a machine without an RTC that has not synchronized yet).
var earliestPlausible = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// staUnsync is STA_UNSYNC of adjtimex(2): the kernel's clock is not
// synchronized.
const staUnsync = 0x40

func (d *doctor) checkClock(context.Context) []checkResult {
	now := time.Now()
	if now.Before(earliestPlausible) {
		return []checkResult{{Name: "clock", Status: checkMissing, Detail: fmt.Sprintf("the system clock says %s: branch@time and PITR need the real time", now.UTC().Format(time.RFC3339)),
			Fix: "apt-get install systemd-timesyncd (or chrony), or date -s"}}
	}
	var tx syscall.Timex
	state, err := syscall.Adjtimex(&tx)
	switch {
	case err != nil:
		return []checkResult{{Name: "clock", Status: checkWarning, Detail: fmt.Sprintf("%s; adjtimex: %v", now.UTC().Format(time.RFC3339), err)}}
	case state == 5 || tx.Status&staUnsync != 0: // TIME_ERROR
		return []checkResult{{Name: "clock", Status: checkWarning,
			Detail: fmt.Sprintf("%s, but the kernel says it is not synchronized (timestamps in branch@time and PITR may drift)", now.UTC().Format(time.RFC3339)),
			Fix:    "apt-get install systemd-timesyncd (or chrony) on the host"}}
	}
	return []checkResult{{Name: "clock", Status: checkOK, Detail: fmt.Sprintf("%s, synchronized", now.UTC().Format(time.RFC3339))}}
}
