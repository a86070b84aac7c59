// Package pstest holds the fixtures the tests of the page server's
// packages share: a repository without redo and a fresh timeline in it,
// the data the import and basebackup tests start from, SQL and pg_control
// helpers, and a cluster on a basebackup.
// Only tests import it; it imports nothing of the page server, so the
// lowest of its packages (datadir) can use it.
package pstest

import (
	"archive/tar"
	"bytes"
	"context"
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
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// NoRedo fails every redo: an import stores only images, so a read that
// needs redo is a bug.
type NoRedo struct{}

// Apply fails.
func (NoRedo) Apply(_ context.Context, _ id.TenantID, k key.Key, _ []byte, recs []value.Record, _ pgdata.LSN) ([]byte, error) {
	return nil, fmt.Errorf("redo of %v (%d records) after an import", k, len(recs))
}

// OpenRepo opens a repository in workdir with NoRedo and no background
// flush, compaction or GC; the test closes it.
func OpenRepo(t *testing.T, workdir string) *repo.Repository {
	t.Helper()
	cfg := repo.DefaultConfig(workdir)
	cfg.Redo = NoRedo{}
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 0, 0, 0
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// NewTimeline creates a tenant in r and a new timeline in it.
func NewTimeline(t *testing.T, r *repo.Repository) (*repo.Tenant, *repo.Timeline) {
	t.Helper()
	tn, err := r.CreateTenant(id.NewTenantID(), repo.DefaultTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.CreateTimeline(id.NewTimelineID(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return tn, tl
}

// ItemsSQL is the data the import and basebackup tests start from: a
// second database, and a table with an index whose rows were deleted in
// part and vacuumed.
var ItemsSQL = []string{
	"CREATE DATABASE second",
	"CREATE TABLE items (id int PRIMARY KEY, body text)",
	"INSERT INTO items SELECT g, repeat('x', 200) || g FROM generate_series(1, 20000) g",
	"CREATE INDEX items_body ON items (body)",
	"DELETE FROM items WHERE id % 7 = 0",
	"VACUUM items",
}

// Exec runs each statement on conn and fails the test at the first error.
func Exec(t *testing.T, conn *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		if _, err := conn.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// ReadControl reads and parses the pg_control of the data directory dir.
func ReadControl(t *testing.T, dir string) *pgdata.ControlFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

// The modes a basebackup gives its directories and files, which
// PostgreSQL wants of a data directory.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// NewClusterFromTar unpacks a basebackup into a new data directory owned
// by the server's OS user and returns a cluster on it, not started, that
// is stopped and removed when the test ends.
func NewClusterFromTar(t *testing.T, tarball []byte, settings map[string]string) *pgcluster.Cluster {
	t.Helper()
	root, err := os.MkdirTemp("", "zenith-basebackup-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data")
	if err := Untar(tarball, dir); err != nil {
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

// Untar unpacks a basebackup into dir, checking that it holds only
// directories and regular files with the modes PostgreSQL wants.
func Untar(tarball []byte, dir string) error {
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

// AssertCleanStart checks the server log: a start from a shut-down
// checkpoint, no WAL replay.
func AssertCleanStart(t *testing.T, pg *pgcluster.Cluster) {
	t.Helper()
	b, err := os.ReadFile(pg.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	if log := string(b); strings.Contains(log, "redo starts") || !strings.Contains(log, "database system was shut down at") {
		t.Fatalf("server did not start cleanly without replay; log:\n%s", log)
	}
}

// Connect opens a connection to database db of pg, or fails the test.
func Connect(t *testing.T, pg *pgcluster.Cluster, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pg.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// QueryInt runs a query that returns one integer.
func QueryInt(t *testing.T, conn *pgx.Conn, sql string) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// WantRows checks the integer a query returns.
func WantRows(t *testing.T, conn *pgx.Conn, sql string, want int64) {
	t.Helper()
	if got := QueryInt(t, conn, sql); got != want {
		t.Errorf("%s = %d, want %d", sql, got, want)
	}
}
