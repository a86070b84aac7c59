package pageserver

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestBasebackupImport imports a stopped cluster, takes a basebackup at
// the import LSN and starts stock PostgreSQL on it: it starts without
// replay at that LSN, has the data (a prepared transaction included),
// takes writes and restarts cleanly.
func TestBasebackupImport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	settings := map[string]string{"max_prepared_transactions": "4"}
	src := pgtest.Start(t, settings)
	conn, err := pgx.Connect(ctx, src.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	exec(t, conn, itemsSQL...)
	exec(t, conn,
		"CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)",
		"INSERT INTO scratch SELECT generate_series(1, 1000)",
		"BEGIN",
		"INSERT INTO items VALUES (0, 'prepared')",
		"PREPARE TRANSACTION 'p1'",
	)
	conn.Close(ctx)
	if err := src.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	tn, tl := newTestTimeline(t, r)
	lsn, err := walingest.ImportDataDir(ctx, tl, src.DataDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var progress []int64
	tarball := takeBasebackup(t, tl, lsn, BasebackupOptions{Progress: func(n int64) { progress = append(progress, n) }})
	if len(progress) < 2 || progress[len(progress)-1] != int64(len(tarball)) {
		t.Errorf("progress ends at %v after %d calls, want the tar's %d bytes", progress[max(0, len(progress)-1):], len(progress), len(tarball))
	}

	// A branch reads everything through its ancestor: same bytes.
	branch, err := tn.Branch(ctx, id.NewTimelineID(), tl.ID(), lsn)
	if err != nil {
		t.Fatal(err)
	}
	if b := takeBasebackup(t, branch, lsn, BasebackupOptions{}); !bytes.Equal(b, tarball) {
		t.Errorf("basebackup of a branch at %v: %d bytes differ from the %d of its ancestor's", lsn, len(b), len(tarball))
	}

	pg := newClusterFromTar(t, tarball, settings)
	compareDataDirs(t, src.DataDir(), pg.DataDir())
	checkLazyBasebackup(t, tl, lsn, pg.DataDir())
	cd, err := pg.ControlData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"Latest checkpoint location":        lsn.String(),
		"Latest checkpoint's REDO location": lsn.String(),
		"Database cluster state":            "shut down",
		"Minimum recovery ending location":  "0/0",
	} {
		if got := cd[field]; got != want {
			t.Errorf("pg_controldata %q = %q, want %q", field, got, want)
		}
	}

	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	assertCleanStart(t, pg)
	conn = connect(t, pg, "postgres")
	wantRows(t, conn, "SELECT count(*) FROM items", 20000-20000/7)
	wantRows(t, conn, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'p1'", 1)
	wantRows(t, conn, "SELECT count(*) FROM scratch", 0) // unlogged: reset as after a crash
	exec(t, conn,
		"COMMIT PREPARED 'p1'",
		"INSERT INTO scratch VALUES (1)",
		"CREATE TABLE after (id int)",
		"INSERT INTO after SELECT generate_series(1, 500)",
	)
	wantRows(t, conn, "SELECT count(*) FROM items WHERE id = 0", 1)
	conn.Close(ctx)
	conn = connect(t, pg, "second")
	if n := queryInt(t, conn, "SELECT count(*) FROM pg_class"); n < 300 {
		t.Errorf("database second has %d pg_class rows, want the catalog's few hundred", n)
	}
	conn.Close(ctx)

	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	conn = connect(t, pg, "postgres")
	defer conn.Close(ctx)
	wantRows(t, conn, "SELECT count(*) FROM after", 500)
	wantRows(t, conn, "SELECT count(*) FROM items", 20000-20000/7+1)
}

// TestBasebackupErrors checks the errors the page service maps to
// SQLSTATEs: an LSN not reached yet, one below the GC cut-off, and a
// timeline into which nothing was imported.
func TestBasebackupErrors(t *testing.T) {
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	tn, err := r.CreateTenant(id.NewTenantID(), repo.DefaultTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	const start = 0x2000000
	tl, err := tn.CreateTimeline(id.NewTimelineID(), start)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		lsn  pgdata.LSN
		want error
	}{
		{"future LSN", start + 0x100, repo.ErrLSNNotReached},
		{"below the GC cut-off", start - 0x100, repo.ErrBelowGCCutoff},
		{"nothing imported", start, datadir.ErrNoControlFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Basebackup(context.Background(), tl, tc.lsn, &out, BasebackupOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Basebackup at %v: error = %v, want %v", tc.lsn, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.lsn.String()) {
				t.Errorf("error %q does not name the LSN %v", err, tc.lsn)
			}
			if out.Len() != 0 {
				t.Errorf("Basebackup wrote %d bytes before failing", out.Len())
			}
		})
	}
}

// takeBasebackup returns a basebackup of tl at lsn.
func takeBasebackup(t *testing.T, tl *repo.Timeline, lsn pgdata.LSN, opts BasebackupOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Basebackup(context.Background(), tl, lsn, &buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newClusterFromTar unpacks a basebackup into a new data directory owned
// by the server's OS user and returns a cluster on it, not started, that
// is stopped and removed when the test ends.
func newClusterFromTar(t *testing.T, tarball []byte, settings map[string]string) *pgcluster.Cluster {
	t.Helper()
	root, err := os.MkdirTemp("", "zenith-basebackup-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data")
	if err := untar(tarball, dir); err != nil {
		os.RemoveAll(root)
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := pgcluster.New(ctx, pgcluster.Options{DataDir: dir, Settings: settings, StopWithParent: true})
	if err != nil {
		os.RemoveAll(root)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log %s ends with:\n%s", c.LogFile(), c.LogTail(40))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx, pgcluster.StopImmediate); err != nil {
			t.Errorf("stop cluster on the basebackup: %v; %s is left behind", err, root)
			return
		}
		os.RemoveAll(root)
	})
	if err := pgcluster.PrepareDir(dir, c.User()); err != nil {
		t.Fatal(err)
	}
	return c
}

// untar unpacks a basebackup into dir, checking that it holds only
// directories and regular files with the modes PostgreSQL wants.
func untar(tarball []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(tarball))
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if !fs.ValidPath(name) || seen[name] {
			return fmt.Errorf("tar entry %q: invalid or duplicate path", h.Name)
		}
		seen[name] = true
		if parent := path.Dir(name); parent != "." && !seen[parent] {
			return fmt.Errorf("tar entry %q comes before its directory", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		switch {
		case h.Typeflag == tar.TypeDir && h.Mode == dirMode:
			if err := os.MkdirAll(p, dirMode); err != nil {
				return err
			}
		case h.Typeflag == tar.TypeReg && h.Mode == fileMode:
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, b, fileMode); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tar entry %q: type %c mode %o, want a directory %o or a regular file %o", h.Name, h.Typeflag, h.Mode, dirMode, fileMode)
		}
	}
}

// compareDataDirs checks that the basebackup's data directory got has
// every relation, SLRU, two-phase and configuration file of the stopped
// cluster's want byte for byte, except unlogged relations' main forks.
func compareDataDirs(t *testing.T, want, got string) {
	t.Helper()
	compared := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(want, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		top, _, _ := strings.Cut(rel, "/")
		switch {
		case walingest.SkippedTopLevel[top] || rel == "global/pg_control" || path.Base(rel) == "pg_internal.init":
			return nil
		case isUnloggedMainFork(want, rel):
			return nil
		}
		wb, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		gb, err := os.ReadFile(filepath.Join(got, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s: basebackup has %d bytes that differ from the cluster's %d", rel, len(gb), len(wb))
		}
		compared++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if compared < 1000 {
		t.Errorf("compared only %d files", compared)
	}
}

// isUnloggedMainFork reports whether rel is a relation file of a
// relation that has an init fork (an unlogged one) and not of that fork.
func isUnloggedMainFork(dir, rel string) bool {
	r, fork, _, err := pgdata.ParseRelationPath(rel)
	if err != nil || fork == pgdata.ForkInit {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, filepath.FromSlash(pgdata.RelationPath(r, pgdata.ForkInit, 0))))
	return err == nil
}

// assertCleanStart checks the server log: a start from a shut-down
// checkpoint, no WAL replay.
func assertCleanStart(t *testing.T, pg *pgcluster.Cluster) {
	t.Helper()
	b, err := os.ReadFile(pg.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	if log := string(b); strings.Contains(log, "redo starts") || !strings.Contains(log, "database system was shut down at") {
		t.Fatalf("server did not start cleanly without replay; log:\n%s", log)
	}
}

func connect(t *testing.T, pg *pgcluster.Cluster, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func queryInt(t *testing.T, conn *pgx.Conn, sql string) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func wantRows(t *testing.T, conn *pgx.Conn, sql string, want int64) {
	t.Helper()
	if got := queryInt(t, conn, sql); got != want {
		t.Errorf("%s = %d, want %d", sql, got, want)
	}
}
