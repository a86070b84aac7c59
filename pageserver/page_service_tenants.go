package pageserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/pageservice"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// serverTenants is the server's tenant manager as the page service sees
// it (pageservice.Tenants).
type serverTenants struct{ s *Server }

var _ pageservice.Tenants = serverTenants{}

func (st serverTenants) Status() pageservice.StatusRow {
	s := st.s.status()
	m := s.Memory
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	return pageservice.StatusRow{
		Columns: []string{"tenants", "timelines", "uptime_seconds", "rss_bytes", "go_heap_bytes",
			"in_memory_layer_bytes", "in_memory_layer_limit", "page_cache_bytes", "page_cache_limit",
			"block_cache_bytes", "block_cache_limit", "wal_in_flight_bytes", "go_memory_limit", "open_layer_files", "max_open_layer_files",
			"disk_full", "disk_full_since", "disk_full_errors", "wal_store_error", "wal_store_error_since",
			"stalled", "stalled_since", "stalled_timelines"},
		Values: []string{strconv.Itoa(s.Tenants), strconv.Itoa(s.Timelines), n(s.UptimeSeconds), n(m.RSSBytes), n(m.GoHeapBytes),
			n(m.InMemoryLayerBytes()), n(m.InMemoryLayerLimit), n(m.PageCacheBytes), n(m.PageCacheLimit),
			n(m.BlockCacheBytes), n(m.BlockCacheLimit), n(m.WALInFlightBytes), n(m.GoMemoryLimit), strconv.Itoa(m.OpenLayerFiles), strconv.Itoa(m.MaxOpenLayerFiles),
			s.DiskFull, s.DiskFullSince, n(s.DiskFullErrors), s.WALStoreError, s.WALStoreErrorSince,
			s.Stalled, s.StalledSince, strconv.Itoa(s.StalledTimelines)},
	}
}

func (st serverTenants) CreateTenant(ctx context.Context, tid id.TenantID, gen repo.Generation) (id.TenantID, error) {
	t, err := st.s.createTenant(ctx, tid, gen)
	if err != nil {
		return id.TenantID{}, err
	}
	return t.id, nil
}

func (st serverTenants) ListTenants() []id.TenantID {
	var ids []id.TenantID
	for _, t := range st.s.tenants.list() {
		ids = append(ids, t.id)
	}
	return ids
}

func (st serverTenants) AttachTenant(ctx context.Context, tid id.TenantID, gen repo.Generation) (pageservice.AttachedTenant, error) {
	t, err := st.s.tenants.attach(ctx, tid, gen)
	if err != nil {
		return pageservice.AttachedTenant{}, err
	}
	return pageservice.AttachedTenant{ID: t.id, Generation: t.tn.Generation(), Timelines: len(t.tn.Timelines())}, nil
}

func (st serverTenants) DetachTenant(ctx context.Context, tid id.TenantID) error {
	return st.s.tenants.detach(ctx, tid)
}

func (st serverTenants) DeleteTenant(tid id.TenantID) error { return st.s.tenants.delete(tid) }

func (st serverTenants) Branches(ctx context.Context, tid id.TenantID) ([]api.BranchInfo, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return nil, err
	}
	return st.s.branchInfos(ctx, t)
}

func (st serverTenants) Branch(ctx context.Context, tid id.TenantID, ref string) (api.BranchInfo, error) {
	t, tl, err := st.s.timeline(tid, ref)
	if err != nil {
		return api.BranchInfo{}, err
	}
	b, ok := t.branchOf(tl.ID())
	if !ok {
		return api.BranchInfo{}, fmt.Errorf("timeline %s of tenant %s is no branch's: %w", tl.ID(), tid, api.ErrBranchNotFound)
	}
	return st.s.branchInfo(ctx, t, b, false)
}

func (st serverTenants) CreateBranch(ctx context.Context, tid id.TenantID, name string, start api.StartPoint) (api.BranchInfo, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return api.BranchInfo{}, err
	}
	return st.s.createBranch(ctx, t, name, start)
}

func (st serverTenants) DeleteBranch(tid id.TenantID, ref string) (id.TimelineID, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return id.TimelineID{}, err
	}
	return t.deleteBranch(ref)
}

func (st serverTenants) GC(ctx context.Context, tid id.TenantID) error {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return err
	}
	return t.gc(ctx)
}

func (st serverTenants) Configure(tid id.TenantID, change api.RetentionChange) ([]api.TenantSetting, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return nil, err
	}
	return t.configure(change)
}

func (st serverTenants) CheckBranchFree(tid id.TenantID, name string) error {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return err
	}
	if _, ok := t.branchNamed(name); ok {
		return fmt.Errorf("branch %q of tenant %s: %w", name, t.id, api.ErrBranchExists)
	}
	return nil
}

func (st serverTenants) Import(ctx context.Context, tid id.TenantID, name, dir string, locations map[uint32]string) (api.BranchInfo, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return api.BranchInfo{}, err
	}
	br, err := t.importBranch(ctx, name, dir, locations)
	if err != nil {
		return api.BranchInfo{}, err
	}
	return st.s.branchInfo(ctx, t, br, true)
}

func (st serverTenants) Timeline(tid id.TenantID, ref string) (*repo.Timeline, error) {
	_, tl, err := st.s.timeline(tid, ref)
	return tl, err
}

func (st serverTenants) WaitForLSN(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN) error {
	return st.s.waitForLSN(ctx, tl, lsn)
}

func (st serverTenants) RecordBefore(ctx context.Context, tid id.TenantID, tl *repo.Timeline, lsn pgdata.LSN) (pgdata.LSN, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return 0, err
	}
	return t.recordBefore(ctx, tl, lsn)
}

func (st serverTenants) WAL(tid id.TenantID, ref string) (pageservice.TimelineWAL, error) {
	return st.s.timelineWAL(tid, ref)
}

func (st serverTenants) ReplicaWAL(tid id.TenantID, ref string) (pageservice.ReplicaWAL, error) {
	return st.s.timelineWAL(tid, ref)
}

// timeline resolves a tenant id and a timeline reference.
func (s *Server) timeline(tid id.TenantID, ref string) (*tenant, *repo.Timeline, error) {
	t, err := s.tenants.get(tid)
	if err != nil {
		return nil, nil, err
	}
	tl, err := t.timeline(ref)
	if err != nil {
		return nil, nil, err
	}
	return t, tl, nil
}

// timelineWAL resolves a tenant id and a timeline reference to the
// timeline's WAL side (timelineWALOf).
func (s *Server) timelineWAL(tid id.TenantID, ref string) (timelineWAL, error) {
	t, tl, err := s.timeline(tid, ref)
	if err != nil {
		return nil, err
	}
	return timelineWALOf(t, tl)
}

// timelineWALOf returns the WAL side of a tenant's timeline; 55000 if it
// takes no WAL.
func timelineWALOf(t *tenant, tl *repo.Timeline) (timelineWAL, error) {
	w := t.walOf(tl.ID())
	if w == nil {
		return nil, pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "timeline %s takes no WAL (see the page server's log)", tl.ID())
	}
	return w, nil
}

// waitForLSN waits, at most the configured wait_lsn_timeout, until tl has
// ingested WAL up to lsn. It fails at once (repo.ErrIngestStopped) if
// tl's ingest stopped before lsn.
func (s *Server) waitForLSN(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN) error {
	if lsn <= tl.LastRecordLSN() {
		return nil
	}
	timeout := time.Duration(s.cfg.WaitLSNTimeout)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tl.WaitForLSN(wctx, lsn); err != nil {
		if errors.Is(err, repo.ErrIngestStopped) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &pgwire.Error{Code: pgwire.CodeQueryCanceled,
			Message: fmt.Sprintf("timeline %s did not reach %v within wait_lsn_timeout (%v); it is at %v", tl.ID(), lsn, timeout, tl.LastRecordLSN()),
			Hint:    "is the timeline's WAL source (callmemaybe) streaming?"}
	}
	return nil
}
