package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// tenantConfigFile is the name of a tenant's settings file.
const tenantConfigFile = "config.toml"

// Tenant is a set of timelines with shared settings: one PostgreSQL
// cluster and its branches.
type Tenant struct {
	repo *Repository
	id   id.TenantID
	dir  string
	log  zerolog.Logger
	conf atomic.Pointer[TenantConfig]

	confMu sync.Mutex // one SetConfig at a time

	mu        sync.Mutex
	timelines map[id.TimelineID]*timelineEntry

	upload tenantUpload
	// gen is the tenant's Generation; stale is set once a higher one is
	// known to be attached elsewhere (see mayDelete).
	gen   atomic.Uint32
	stale atomic.Bool
}

// timelineEntry is a timeline the tenant knows of: its metadata as last
// read or written, and the Timeline once loaded.
type timelineEntry struct {
	meta metadata
	tl   *Timeline
	// deleting is set while the timeline is being deleted: it cannot be
	// loaded or branched from.
	deleting bool
}

// TimelineInfo describes a timeline without loading it.
type TimelineInfo struct {
	ID          id.TimelineID
	Ancestor    id.TimelineID // zero without an ancestor
	AncestorLSN pgdata.LSN
}

func (tn *Tenant) timelinesDir() string { return filepath.Join(tn.dir, "timelines") }

func (tn *Tenant) timelineDir(tid id.TimelineID) string {
	return filepath.Join(tn.timelinesDir(), tid.String())
}

// loadTenant reads a tenant's settings and the metadata of its timelines;
// the timelines themselves load at first use.
func loadTenant(r *Repository, tid id.TenantID) (*Tenant, error) {
	tn := &Tenant{
		repo:      r,
		id:        tid,
		dir:       r.tenantDir(tid),
		log:       r.log.With().Str("tenant", tid.String()).Logger(),
		timelines: make(map[id.TimelineID]*timelineEntry),
	}
	b, err := vfs.ReadFile(r.fs, filepath.Join(tn.dir, tenantConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tenant %s: %w", tid, ErrTenantNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load tenant %s: %w", tid, err)
	}
	conf, err := decodeTenantConfig(b)
	if err != nil {
		return nil, fmt.Errorf("load tenant %s: %w", tid, err)
	}
	tn.conf.Store(&conf)
	gen, err := readGeneration(r.fs, tn.dir)
	if err != nil {
		return nil, fmt.Errorf("load tenant %s: %w", tid, err)
	}
	tn.gen.Store(uint32(gen))
	names, err := r.fs.List(tn.timelinesDir())
	if err != nil {
		return nil, fmt.Errorf("load tenant %s: list timelines: %w", tid, err)
	}
	for _, name := range names {
		tlid, err := id.ParseTimelineID(name)
		if err != nil {
			continue // not a timeline directory
		}
		file := filepath.Join(tn.timelineDir(tlid), metadataFile)
		b, err := vfs.ReadFile(r.fs, file)
		if errors.Is(err, fs.ErrNotExist) {
			// A crash between creating the directory and writing the
			// metadata: the timeline was never created.
			tn.log.Warn().Str("timeline", name).Msg("ignoring timeline directory without metadata")
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load tenant %s: %w", tid, err)
		}
		m, err := decodeMetadata(b, file)
		if err != nil {
			return nil, fmt.Errorf("load tenant %s: %w", tid, err)
		}
		tn.timelines[tlid] = &timelineEntry{meta: m}
	}
	return tn, nil
}

// ID is the tenant's id.
func (tn *Tenant) ID() id.TenantID { return tn.id }

// Config is the tenant's settings.
func (tn *Tenant) Config() TenantConfig { return *tn.conf.Load() }

// SetConfig replaces the tenant's settings, durably (its config.toml is
// replaced atomically), after validating them. Flushes, compaction and
// GC use the new settings from their next run: a longer retention keeps
// what is still there, it cannot bring back what GC removed.
func (tn *Tenant) SetConfig(conf TenantConfig) error {
	if err := conf.Validate(); err != nil {
		return err
	}
	b, err := encodeTenantConfig(conf)
	if err != nil {
		return err
	}
	tn.confMu.Lock()
	defer tn.confMu.Unlock()
	if _, err := vfs.WriteFileAtomic(tn.repo.fs, filepath.Join(tn.dir, tenantConfigFile), b, 0o644); err != nil {
		return fmt.Errorf("tenant %s: %w", tn.id, err)
	}
	tn.conf.Store(&conf)
	tn.log.Info().Int64("gc_horizon", conf.GCHorizon).Stringer("pitr_interval", time.Duration(conf.PITRInterval)).Msg("tenant settings changed")
	return nil
}

// Timelines lists the tenant's timelines, ordered by id.
func (tn *Tenant) Timelines() []TimelineInfo {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	infos := make([]TimelineInfo, 0, len(tn.timelines))
	for tid, e := range tn.timelines {
		if e.deleting {
			continue
		}
		info := TimelineInfo{ID: tid, AncestorLSN: e.meta.AncestorLSN}
		if e.meta.Ancestor != nil {
			info.Ancestor = *e.meta.Ancestor
		}
		infos = append(infos, info)
	}
	sort.Slice(infos, func(i, j int) bool { return string(infos[i].ID[:]) < string(infos[j].ID[:]) })
	return infos
}

// Timeline returns the timeline, loading it (and its ancestors) if this is
// its first use.
func (tn *Tenant) Timeline(tid id.TimelineID) (*Timeline, error) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.timelineLocked(tid)
}

func (tn *Tenant) timelineLocked(tid id.TimelineID) (*Timeline, error) {
	e, ok := tn.timelines[tid]
	if !ok || e.deleting {
		return nil, fmt.Errorf("timeline %s of tenant %s: %w", tid, tn.id, ErrTimelineNotFound)
	}
	if e.tl != nil {
		return e.tl, nil
	}
	var ancestor *Timeline
	if e.meta.Ancestor != nil {
		var err error
		if ancestor, err = tn.timelineLocked(*e.meta.Ancestor); err != nil {
			return nil, fmt.Errorf("load ancestor of timeline %s: %w", tid, err)
		}
	}
	tl, err := loadTimeline(tn, tid, e.meta, ancestor)
	if err != nil {
		return nil, fmt.Errorf("load timeline %s of tenant %s: %w", tid, tn.id, err)
	}
	e.tl = tl
	// Learn its remote-consistent LSN now, not at the upload loop's
	// next tick.
	tn.repo.RequestUpload()
	tl.log.Debug().Stringer("disk_consistent_lsn", e.meta.DiskConsistentLSN).Int("layers", len(e.meta.Layers)).Msg("loaded timeline")
	return tl, nil
}

// CreateTimeline creates an empty timeline without an ancestor, whose
// history starts after start: its first Put must be above start.
func (tn *Tenant) CreateTimeline(tid id.TimelineID, start pgdata.LSN) (*Timeline, error) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.createLocked(tid, metadata{DiskConsistentLSN: start, GCCutoffLSN: start})
}

// Branch creates timeline tid as a branch of ancestor at lsn (the last
// record LSN of the ancestor if lsn is 0). It writes only the new
// timeline's metadata, so it costs the same however much data the ancestor
// holds; if the branch point is above what the ancestor has flushed, the
// ancestor is flushed first so that the branch point survives a crash.
func (tn *Tenant) Branch(ctx context.Context, tid, ancestor id.TimelineID, lsn pgdata.LSN) (*Timeline, error) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	a, err := tn.timelineLocked(ancestor)
	if err != nil {
		return nil, err
	}
	if lsn == 0 {
		lsn = a.LastRecordLSN()
	}
	a.mu.RLock()
	last, prev, cutoff, disk := a.last, a.prev, a.state.gcCutoff, a.state.diskConsistentLSN
	a.mu.RUnlock()
	if lsn < cutoff {
		return nil, fmt.Errorf("branch %s at %v from %s (GC cut-off %v): %w", tid, lsn, ancestor, cutoff, ErrBranchBeforeGCCutoff)
	}
	if lsn > last {
		return nil, fmt.Errorf("branch %s at %v from %s (last record %v): %w", tid, lsn, ancestor, last, ErrBranchAfterLastLSN)
	}
	if lsn > disk {
		if err := a.Flush(ctx); err != nil {
			return nil, fmt.Errorf("branch %s at %v: flush ancestor: %w", tid, lsn, err)
		}
	}
	if lsn != last {
		prev = 0 // the start of the record ending at lsn is not known here
	}
	return tn.createLocked(tid, metadata{
		Ancestor:          &ancestor,
		AncestorLSN:       lsn,
		DiskConsistentLSN: lsn,
		PrevRecordLSN:     prev,
		GCCutoffLSN:       lsn,
	})
}

// createLocked creates a timeline's directory and metadata durably and
// loads it.
func (tn *Tenant) createLocked(tid id.TimelineID, m metadata) (*Timeline, error) {
	if _, ok := tn.timelines[tid]; ok {
		return nil, fmt.Errorf("timeline %s of tenant %s: %w", tid, tn.id, ErrTimelineExists)
	}
	fs := tn.repo.fs
	dir := tn.timelineDir(tid)
	if err := vfs.MkdirDurable(fs, dir, 0o755); err != nil {
		return nil, fmt.Errorf("create timeline %s: %w", tid, err)
	}
	m.Layers = []string{}
	b, err := encodeMetadata(m)
	if err != nil {
		return nil, err
	}
	if _, err := vfs.WriteFileAtomic(fs, filepath.Join(dir, metadataFile), b, 0o644); err != nil {
		return nil, fmt.Errorf("create timeline %s: %w", tid, err)
	}
	tn.timelines[tid] = &timelineEntry{meta: m}
	tn.log.Info().Str("timeline", tid.String()).Stringer("start_lsn", m.DiskConsistentLSN).Msg("created timeline")
	tn.repo.RequestUpload()
	return tn.timelineLocked(tid)
}

// loaded returns the timelines loaded so far.
func (tn *Tenant) loaded() []*Timeline {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var tls []*Timeline
	for _, e := range tn.timelines {
		if e.tl != nil {
			tls = append(tls, e.tl)
		}
	}
	return tls
}

// branchPointsLocked returns the branch points of tid's children.
func (tn *Tenant) branchPointsLocked(tid id.TimelineID) []pgdata.LSN {
	var lsns []pgdata.LSN
	for _, e := range tn.timelines {
		if e.meta.Ancestor != nil && *e.meta.Ancestor == tid {
			lsns = append(lsns, e.meta.AncestorLSN)
		}
	}
	return lsns
}

// GC runs garbage collection on every loaded timeline of the tenant and
// returns the first error.
func (tn *Tenant) GC(ctx context.Context) error {
	var first error
	for _, tl := range tn.loaded() {
		if err := tl.GC(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Compact runs compaction on every loaded timeline of the tenant and
// returns the first error.
func (tn *Tenant) Compact(ctx context.Context) error {
	var first error
	for _, tl := range tn.loaded() {
		if err := tl.Compact(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
