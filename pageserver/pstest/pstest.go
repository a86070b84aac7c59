// Package pstest holds the fixtures the tests of the page server's
// packages share: a repository without redo and a fresh timeline in it.
// Only tests import it; it imports nothing of the page server, so the
// lowest of its packages (datadir) can use it.
package pstest

import (
	"context"
	"fmt"
	"testing"

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
