package repo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// appendRedo is the stand-in for WAL redo in these tests: the page is the
// base with every record's bytes appended. It tests storage, not
// PostgreSQL, and makes any lost, duplicated or reordered record visible.
type appendRedo struct{}

func (appendRedo) Apply(_ context.Context, _ id.TenantID, _ key.Key, base []byte, recs []value.Record, _ pgdata.LSN) ([]byte, error) {
	out := bytes.Clone(base)
	for _, r := range recs {
		out = append(out, r.Value.Data...)
	}
	return out, nil
}

var testRel = pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}

func blk(n uint32) key.Key { return key.RelBlock(testRel, pgdata.ForkMain, n) }

// testConfig is a repository on fs without background loops, so tests
// decide when things happen.
func testConfig(fs vfs.FS) repo.Config {
	cfg := repo.DefaultConfig("/work")
	cfg.FS = fs
	cfg.Redo = appendRedo{}
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 0, 0, 0
	return cfg
}

func smallTenantConfig() repo.TenantConfig {
	c := repo.DefaultTenantConfig()
	c.CheckpointDistance = 4 << 10
	c.CompactionTargetSize = 4 << 10
	c.CompactionThreshold = 3
	c.ImageCreationThreshold = 2
	c.GCHorizon = 1 << 10
	c.PITRInterval = 0
	return c
}

func mustOpen(t testing.TB, cfg repo.Config) *repo.Repository {
	t.Helper()
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// createTimeline creates tenant tid (smallTenantConfig) on r with one
// timeline, tlid, starting at start.
func createTimeline(t testing.TB, r *repo.Repository, tid id.TenantID, tlid id.TimelineID, start pgdata.LSN) (*repo.Tenant, *repo.Timeline) {
	t.Helper()
	return createTimelineConf(t, r, tid, tlid, start, smallTenantConfig())
}

// newTimeline creates a tenant with conf on r, with one timeline
// starting at 0.
func newTimeline(t testing.TB, r *repo.Repository, conf repo.TenantConfig) (*repo.Tenant, *repo.Timeline) {
	t.Helper()
	return createTimelineConf(t, r, id.NewTenantID(), id.NewTimelineID(), 0, conf)
}

func createTimelineConf(t testing.TB, r *repo.Repository, tid id.TenantID, tlid id.TimelineID, start pgdata.LSN, conf repo.TenantConfig) (*repo.Tenant, *repo.Timeline) {
	t.Helper()
	tn, err := r.CreateTenant(tid, conf)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.CreateTimeline(tlid, start)
	if err != nil {
		t.Fatal(err)
	}
	return tn, tl
}

// put ingests one record at lsn that stores the given values.
func put(t testing.TB, tl *repo.Timeline, lsn pgdata.LSN, kvs map[key.Key]value.Value) {
	t.Helper()
	for k, v := range kvs {
		if err := tl.Put(k, lsn, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := tl.FinishWrite(lsn, lsn-8); err != nil {
		t.Fatal(err)
	}
}

func wantGet(t testing.TB, tl *repo.Timeline, k key.Key, lsn pgdata.LSN, want string) {
	t.Helper()
	got, err := tl.Get(context.Background(), k, lsn)
	if err != nil {
		t.Fatalf("Get(%v, %v) on %s: %v", k, lsn, tl.ID(), err)
	}
	if string(got) != want {
		t.Fatalf("Get(%v, %v) on %s = %q, want %q", k, lsn, tl.ID(), got, want)
	}
}

// testLog sends the repository's log to the test's log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: testLog{t}, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}})
}
