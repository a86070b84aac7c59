// Package pstest holds the fixtures the tests of the page server's
// packages share: a repository without redo and a fresh timeline in it,
// the data the import and basebackup tests start from, SQL and pg_control
// helpers.
// Only tests import it; it imports nothing of the page server, so the
// lowest of its packages (datadir) can use it.
package pstest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
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
