package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tarfile"
)

// What zenith import does with a base backup, which is a copy of a running
// server's files plus the WAL written while it was taken: the page server
// imports only a cleanly shut down data directory (one whose last record
// is a shutdown checkpoint), so the copy is first recovered here by stock
// PostgreSQL, as any restore of a base backup is, and stopped cleanly.

// baseBackup copies the running server at connStr into dir (which must not
// exist) with pg_basebackup: the replication protocol's BASE_BACKUP, with
// the WAL streamed alongside, showing pg_basebackup's own progress. The
// copy is in tar format (extractTarBackup unpacks it): a plain one would
// put each tablespace at its location on the server, which may be taken
// here (by the server itself, on the same host).
func (e *Env) baseBackup(ctx context.Context, connStr, dir string) error {
	cl, err := pgcluster.New(ctx, pgcluster.Options{BinDir: e.Config.PGBinDir, DataDir: dir})
	if err != nil {
		return err
	}
	if err := pgcluster.PrepareDir(dir, cl.User()); err != nil {
		return err
	}
	// --no-sync: the copy is thrown away once imported; the page server
	// makes the import durable.
	cmd := cl.Command(ctx, "pg_basebackup", "-d", connStr, "-D", dir, "-Ft", "-X", "stream", "-c", "fast", "-P", "--no-sync")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg_basebackup: %w", err)
	}
	prog := newProgress(e.Progress, "copying the server", 0)
	tail := readBasebackupProgress(stderr, prog)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%w: pg_basebackup from %q: %v\n%s", ErrImportSource, connStr, err, strings.TrimSpace(tail))
	}
	prog.Done()
	return nil
}

// basebackupProgress matches pg_basebackup -P's progress: "123/4567 kB".
var basebackupProgress = regexp.MustCompile(`(\d+)/(\d+) kB`)

// readBasebackupProgress follows pg_basebackup's stderr: progress reports
// (ended by carriage returns) move prog, anything else is kept and its
// end returned, for the error message.
func readBasebackupProgress(r io.Reader, prog *progress) string {
	var other bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		line := sc.Text()
		if m := basebackupProgress.FindStringSubmatch(line); m != nil {
			done, _ := strconv.ParseInt(m[1], 10, 64)
			total, _ := strconv.ParseInt(m[2], 10, 64)
			prog.Set(done<<10, total<<10)
			continue
		}
		if strings.TrimSpace(line) != "" {
			other.WriteString(line + "\n")
		}
	}
	_, _ = io.Copy(io.Discard, r)
	s := other.String()
	if len(s) > 4096 {
		s = s[len(s)-4096:]
	}
	return s
}

// copyDataDir copies the data directory src (a plain base backup) into
// dst, which must not exist, for recovery: src is only read. Its
// tablespaces are copied into tablespacesDir/<OID>, linked from
// dst/pg_tblspc; their locations (where src's links point) are returned,
// by OID.
func copyDataDir(src, dst, tablespacesDir string) (map[uint32]string, error) {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(pw, src)) }()
	locations, err := tarfile.ExtractBasebackup(pr, dst, tablespacesDir)
	if err != nil {
		pr.CloseWithError(err)
		return nil, fmt.Errorf("%w %s: copy it: %v", ErrImportSource, src, err)
	}
	return locations, nil
}

// recoverDataDir runs stock PostgreSQL on dir, a base backup, until its
// recovery has replayed the backup's WAL, and stops it cleanly: dir is
// then a cleanly shut down data directory. tmp holds the socket and the
// server log.
func (e *Env) recoverDataDir(ctx context.Context, dir, tmp string) error {
	// A copy must not stay a standby, nor wait for an archive.
	for _, f := range []string{"standby.signal", "recovery.signal", "postmaster.pid"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// A server whose configuration lives elsewhere (Debian keeps it in
	// /etc/postgresql) leaves none in its data directory.
	for f, text := range map[string]string{
		"postgresql.conf": "",
		"pg_hba.conf":     "local all all trust\nhost all all 127.0.0.1/32 trust\n",
		"pg_ident.conf":   "",
	} {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
				return err
			}
		}
	}
	cl, err := pgcluster.New(ctx, pgcluster.Options{
		BinDir:    e.Config.PGBinDir,
		DataDir:   dir,
		SocketDir: tmp,
		LogFile:   filepath.Join(tmp, "recovery.log"),
		// The source's settings may name files and libraries of its
		// host: recovery needs none of them.
		Settings: map[string]string{
			"archive_mode":             "off",
			"shared_preload_libraries": "",
			"ssl":                      "off",
			"logging_collector":        "off",
			"hba_file":                 filepath.Join(dir, "pg_hba.conf"),
			"ident_file":               filepath.Join(dir, "pg_ident.conf"),
		},
		StartTimeout:   importRecoveryTimeout,
		StopWithParent: true,
	})
	if err != nil {
		return err
	}
	if err := pgcluster.PrepareDir(dir, cl.User()); err != nil {
		return err
	}
	// The copies of its tablespaces: linked already, or named by
	// tablespace_map, from which recovery links them.
	mapped, err := readTablespaceMap(filepath.Join(dir, "tablespace_map"))
	if err != nil {
		return err
	}
	copies := slices.Collect(maps.Values(mapped))
	links, err := filepath.Glob(filepath.Join(dir, "pg_tblspc", "*"))
	if err != nil {
		return err
	}
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil {
			copies = append(copies, target)
		}
	}
	for _, ts := range copies {
		if err := pgcluster.PrepareDir(ts, cl.User()); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.Progress, "recovering the base backup (replaying the WAL written while it was taken)\n")
	if err := cl.Start(ctx); err != nil {
		return fmt.Errorf("recover the base backup: %w", err)
	}
	if err := cl.Stop(ctx, pgcluster.StopFast); err != nil {
		return fmt.Errorf("stop the recovered base backup: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		return err
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		return err
	}
	if cf.State != pgdata.DBShutdowned {
		return fmt.Errorf("the recovered base backup's pg_control says %q after a clean stop, want %q", cf.State, pgdata.DBShutdowned)
	}
	return nil
}
