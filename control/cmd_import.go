package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// ErrImportSource is wrapped by every refusal of what zenith import was
// given: not a PostgreSQL 15 data directory, a running or crashed one.
var ErrImportSource = errors.New("cannot import")

// importRecoveryTimeout bounds the recovery of a base backup before its
// import: the WAL written while the backup ran is replayed.
const importRecoveryTimeout = 30 * time.Minute

// ImportCommand is `zenith import SOURCE`.
func ImportCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "bring an existing PostgreSQL 15 database in as a new branch",
		ArgsUsage: "DIR|CONNSTR",
		Description: `Imports a PostgreSQL 15 cluster as a new branch. SOURCE is either:
  DIR       a data directory whose server was stopped cleanly (pg_ctl stop
            -m fast or -m smart; not -m immediate, not a crash), or a plain
            base backup made by pg_basebackup -Fp (with its WAL: -X stream
            or -X fetch), which is copied and recovered first, or the
            directory of a tar-format base backup made by pg_basebackup
            -Ft (base.tar and pg_wal.tar, each perhaps compressed: .gz,
            .lz4, .zst), which is unpacked and recovered first; DIR
            itself is only read
  CONNSTR   a running server, as a libpq connection string
            ("host=db1 port=5432 user=postgres" or postgresql://...):
            pg_basebackup copies it through the replication protocol's
            BASE_BACKUP (the role needs the REPLICATION attribute and
            pg_hba.conf a replication line for this host), then the copy
            is recovered here and imported; the server keeps running
The branch starts at the cluster's last checkpoint; its WAL before that is
not history zenith can branch from. Tablespaces come along (a compute keeps
their files in its own directory). On a terminal a bar shows the bytes, the
rate and the time left; otherwise a line every few seconds.

The branch is --branch (default: imported) of --tenant (default: the
repository's default tenant), or of a new tenant with --new-tenant. If the
import fails, nothing of it is left (a new tenant is deleted too).

Examples:
  pg_ctl -D /var/lib/pgsql/15/data stop -m fast
  zenith import /var/lib/pgsql/15/data --branch prod
  zenith import "host=db1 user=replicator" --new-tenant --branch main
  zenith pg start prod`,
		Flags: []cli.Flag{
			tenantFlag(),
			&cli.BoolFlag{Name: "new-tenant", Usage: "create a new tenant for the branch (its id is printed)"},
			&cli.StringFlag{Name: "branch", Value: "imported", Usage: "`NAME` of the new branch"},
		},
		Action: runImport,
	}
}

func runImport(c *cli.Context) (err error) {
	if c.NArg() != 1 {
		return fmt.Errorf("import takes one SOURCE, a data directory or a connection string (see zenith import --help)")
	}
	if c.Bool("new-tenant") && c.String("tenant") != "" {
		return fmt.Errorf("--new-tenant and --tenant: give one")
	}
	src, name := c.Args().First(), c.String("branch")
	if err := api.CheckBranchName(name); err != nil {
		return fmt.Errorf("--branch: %w", err)
	}
	e, t, err := openTenant(c)
	if err != nil {
		return err
	}
	ctx := c.Context

	// Check a directory before anything is created, so that mistakes
	// cost nothing.
	var dir string
	recover, tarBackup := false, false
	if !isConnString(src) {
		if dir, err = filepath.Abs(src); err != nil {
			return err
		}
		// A tar-format backup is checked once unpacked.
		if tarBackup = isTarBackup(dir); !tarBackup {
			if recover, err = checkImportDir(dir); err != nil {
				return err
			}
		}
	}

	if c.Bool("new-tenant") {
		if t, err = e.createTenant(ctx, id.TenantID{}); err != nil {
			return fmt.Errorf("create a tenant: %w", err)
		}
		fmt.Fprintf(e.Progress, "created tenant %s\n", t)
		defer func() {
			if err != nil {
				if derr := e.DeleteTenant(context.WithoutCancel(ctx), t, true); derr != nil {
					fmt.Fprintf(e.Progress, "could not delete tenant %s after the failed import: %v\n", t, derr)
				}
			}
		}()
	} else if _, err := e.Pageserver().BranchList(ctx, t); err != nil {
		return explainTenant(err, t)
	}

	var locations map[uint32]string // the tablespaces' own, if dir is a copy
	if isConnString(src) || recover || tarBackup {
		tmp, err := os.MkdirTemp(e.Dir, "import-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if err := os.Chmod(tmp, 0o755); err != nil {
			return err
		}
		copyDir, tablespaces := filepath.Join(tmp, "pgdata"), filepath.Join(tmp, "tablespaces")
		// Searchable by the OS user recovery runs as, like tmp.
		if err := os.Mkdir(tablespaces, 0o755); err != nil {
			return err
		}
		unpack := func(backup string) error {
			prog := newProgress(e.Progress, "unpacking the backup", archivesBytes(backup))
			if locations, err = extractTarBackup(backup, copyDir, tablespaces, prog); err != nil {
				return err
			}
			prog.Done()
			// A tar of a cleanly stopped directory needs no recovery.
			recover, err = checkImportDir(copyDir)
			return err
		}
		switch {
		case isConnString(src):
			backup := filepath.Join(tmp, "backup")
			if err = e.baseBackup(ctx, src, backup); err == nil {
				err = errors.Join(unpack(backup), os.RemoveAll(backup))
			}
		case tarBackup:
			err = unpack(dir)
		default:
			locations, err = copyDataDir(dir, copyDir, tablespaces)
		}
		if err != nil {
			return err
		}
		if isConnString(src) || recover {
			if err := e.recoverDataDir(ctx, copyDir, tmp); err != nil {
				return err
			}
		}
		dir = copyDir
	}

	start := time.Now()
	skip, err := oldWAL(dir)
	if err != nil {
		return err
	}
	total, err := dirBytes(dir, skip)
	if err != nil {
		return err
	}
	prog := newProgress(e.Progress, "importing "+name, total)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDirExcept(pw, dir, skip, locations)) }()
	if err := e.Pageserver().Import(ctx, t, name, io.TeeReader(pr, prog)); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("import %s as branch %s: %w", src, name, explainTenant(err, t))
	}
	prog.Done()
	b, err := e.branchNamed(ctx, t, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "imported %s as branch %s of tenant %s at %s (%s in %v)\n",
		src, name, t, b.LastRecordLSN, formatBytes(prog.Bytes()), time.Since(start).Round(time.Millisecond))
	tenantArg := ""
	if c.String("tenant") != "" || c.Bool("new-tenant") {
		tenantArg = " --tenant " + t.String()
	}
	fmt.Fprintf(e.Out, "next: zenith pg start %s%s\n", name, tenantArg)
	return nil
}

// branchNamed is tenant t's branch name.
func (e *Env) branchNamed(ctx context.Context, t id.TenantID, name string) (api.BranchInfo, error) {
	branches, err := e.Pageserver().BranchList(ctx, t)
	if err != nil {
		return api.BranchInfo{}, err
	}
	for _, b := range branches {
		if b.Name == name {
			return b, nil
		}
	}
	return api.BranchInfo{}, fmt.Errorf("branch %s of tenant %s is not on the page server", name, t)
}

// isConnString tells a libpq connection string (a URL, or key=value
// pairs) from a path.
func isConnString(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || strings.Contains(s, "=")
}

// checkImportDir checks that dir is a PostgreSQL 15 data directory that
// can be imported: cleanly shut down, or a base backup (backup_label),
// which needs recovery first (recover is then true).
func checkImportDir(dir string) (recover bool, err error) {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("%w %s: no such directory", ErrImportSource, dir)
	}
	if err != nil {
		return false, fmt.Errorf("%w %s: %v", ErrImportSource, dir, err)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("%w %s: not a directory (give a data directory, or a connection string to a running server)", ErrImportSource, dir)
	}
	v, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("%w %s: not a PostgreSQL data directory (it has no PG_VERSION)", ErrImportSource, dir)
	}
	if err != nil {
		return false, fmt.Errorf("%w %s: %v", ErrImportSource, dir, err)
	}
	if ver := strings.TrimSpace(string(v)); ver != "15" {
		return false, fmt.Errorf("%w %s: it is a PostgreSQL %s data directory; zenith imports PostgreSQL 15 only (pg_upgrade it to 15 first)", ErrImportSource, dir, ver)
	}
	b, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		return false, fmt.Errorf("%w %s: %v", ErrImportSource, dir, err)
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		return false, fmt.Errorf("%w %s: %v", ErrImportSource, dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "backup_label")); err == nil {
		if pid := runningPostmaster(dir); pid > 0 {
			return false, fmt.Errorf("%w %s: a server (pid %d) runs on it; stop it first", ErrImportSource, dir, pid)
		}
		return true, nil
	}
	if cf.State == pgdata.DBShutdowned {
		return false, nil
	}
	if pid := runningPostmaster(dir); pid > 0 {
		return false, fmt.Errorf("%w %s: its server is running (pid %d, pg_control state %q): stop it with pg_ctl stop -m fast, or import it while it runs from a connection string",
			ErrImportSource, dir, pid, cf.State)
	}
	return false, fmt.Errorf("%w %s: it was not shut down cleanly (pg_control state %q): start its server once so it recovers and stop it with pg_ctl stop -m fast",
		ErrImportSource, dir, cf.State)
}

// runningPostmaster is the pid in dir's postmaster.pid if that process
// lives, else 0.
func runningPostmaster(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid < 1 || !pgcluster.Alive(pid) {
		return 0
	}
	return pid
}

// oldWAL returns what of the data directory dir's WAL the import does not
// need: the page server reads only the shutdown checkpoint record that
// pg_control points at, so every pg_wal file but the segment holding it
// (and the next, if the record may run into it) stays here.
func oldWAL(dir string) (skip func(rel string) bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		return nil, err
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		return nil, err
	}
	segSize := uint64(cf.XLogSegSize)
	seg := uint64(cf.CheckPoint) / segSize
	// The record (114 bytes) runs into the next segment only from the
	// last page of its own.
	next := seg
	if uint64(cf.CheckPoint)%segSize >= segSize-pgdata.XLogBlockSize {
		next = seg + 1
	}
	return func(rel string) bool {
		name, ok := strings.CutPrefix(rel, "pg_wal/")
		if !ok || strings.Contains(name, "/") {
			return false
		}
		_, n, partial, err := pgdata.ParseWALFileName(name, segSize)
		return err == nil && !partial && n != seg && n != next
	}, nil
}

// dirBytes is the size of the regular files of the data directory dir
// (its tablespaces' included), but those skip (if not nil) returns true
// for.
func dirBytes(dir string, skip func(rel string) bool) (int64, error) {
	var n int64
	err := walkDataDir(dir, func(rel, _ string, info fs.FileInfo, _ string) error {
		if info.Mode().IsRegular() && (skip == nil || !skip(rel)) {
			n += info.Size()
		}
		return nil
	})
	return n, err
}
