package repo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Repository is the page server's storage: tenants, each a tree of
// timelines. Open it once per work directory; Close flushes what is in
// memory.
type Repository struct {
	workdir string
	fs      vfs.FS
	env     *layer.Env
	cache   *pageCache
	mem     memoryUse
	redo    Redo
	log     zerolog.Logger
	now     func() time.Time
	cfg     Config

	mu      sync.Mutex
	tenants map[id.TenantID]*Tenant
	closed  bool

	remote      remote.Storage
	remoteStats RemoteStats
	disk        vfs.DiskState
	attachMu    sync.Mutex // one attach or detach at a time

	// ctx ends when Close begins: background work and writers waiting
	// for a full disk stop.
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	flushCh  chan struct{}
	uploadCh chan struct{}
}

// Open opens (creating if needed) the repository in cfg.Workdir and starts
// its background loops. Tenants are not read until used.
func Open(cfg Config) (*Repository, error) {
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxOpenLayerFiles == 0 {
		cfg.MaxOpenLayerFiles = DefaultConfig("").MaxOpenLayerFiles
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Repository{
		workdir:  cfg.Workdir,
		fs:       cfg.FS,
		cache:    newPageCache(cfg.PageCacheSize),
		redo:     cfg.Redo,
		log:      cfg.Logger,
		now:      cfg.Now,
		cfg:      cfg,
		tenants:  make(map[id.TenantID]*Tenant),
		flushCh:  make(chan struct{}, 1),
		remote:   cfg.Remote,
		uploadCh: make(chan struct{}, 1),
	}
	if err := r.fs.MkdirAll(r.tenantsDir(), 0o755); err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	// The work directory may be new too: make both levels durable.
	for _, dir := range []string{filepath.Dir(r.workdir), r.workdir} {
		if err := vfs.SyncDir(r.fs, dir); err != nil {
			return nil, fmt.Errorf("open repository: %w", err)
		}
	}
	r.env = layer.NewEnv(r.fs, cfg.BlockCacheSize, cfg.MaxOpenLayerFiles)
	if r.remote != nil {
		r.env.Fetch = r.fetchLayer
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx, r.cancel = ctx, cancel
	r.startLoop(ctx, "flush", cfg.FlushInterval, r.flushCh, r.flushAll)
	r.startLoop(ctx, "compaction", cfg.CompactionInterval, nil, r.compactAll)
	r.startLoop(ctx, "gc", cfg.GCInterval, nil, r.gcAll)
	if r.remote != nil {
		r.startLoop(ctx, "upload", cfg.UploadInterval, r.uploadCh, r.uploadAll)
	}
	return r, nil
}

// DiskState says whether the repository's writes find the disk full:
// the last flush failed for it, or a compaction did since.
func (r *Repository) DiskState() *vfs.DiskState { return &r.disk }

func (r *Repository) tenantsDir() string { return filepath.Join(r.workdir, "tenants") }

func (r *Repository) tenantDir(tid id.TenantID) string {
	return filepath.Join(r.tenantsDir(), tid.String())
}

// CreateTenant creates a tenant with the given settings, durably.
func (r *Repository) CreateTenant(tid id.TenantID, conf TenantConfig) (*Tenant, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, err := r.tenantLocked(tid); err == nil {
		return nil, fmt.Errorf("tenant %s: %w", tid, ErrTenantExists)
	} else if !errors.Is(err, ErrTenantNotFound) {
		return nil, err
	}
	dir := r.tenantDir(tid)
	b, err := encodeTenantConfig(conf)
	if err != nil {
		return nil, err
	}
	err = vfs.MkdirDurable(r.fs, dir, 0o755)
	if err == nil {
		err = vfs.MkdirDurable(r.fs, filepath.Join(dir, "timelines"), 0o755)
	}
	if err == nil {
		_, err = vfs.WriteFileAtomic(r.fs, filepath.Join(dir, tenantConfigFile), b, 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("create tenant %s: %w", tid, err)
	}
	r.log.Info().Str("tenant", tid.String()).Msg("created tenant")
	return r.tenantLocked(tid)
}

// Tenant returns the tenant, reading it from disk at its first use.
func (r *Repository) Tenant(tid id.TenantID) (*Tenant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	return r.tenantLocked(tid)
}

func (r *Repository) tenantLocked(tid id.TenantID) (*Tenant, error) {
	if tn, ok := r.tenants[tid]; ok {
		return tn, nil
	}
	tn, err := loadTenant(r, tid)
	if err != nil {
		return nil, err
	}
	r.tenants[tid] = tn
	return tn, nil
}

// Tenants lists the ids of every tenant on disk, ordered. It finishes the
// deletions of tenants that a crash interrupted after their commit point.
func (r *Repository) Tenants() ([]id.TenantID, error) {
	names, err := r.fs.List(r.tenantsDir())
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	var ids []id.TenantID
	for _, n := range names {
		if strings.HasSuffix(n, detachedSuffix) {
			// A detach a crash cut short: its objects are in remote
			// storage.
			if err := vfs.RemoveAll(r.fs, filepath.Join(r.tenantsDir(), n)); err != nil {
				return nil, fmt.Errorf("finish detaching tenant: %w", err)
			}
			continue
		}
		if strings.HasSuffix(n, deletedSuffix) {
			if err := r.removeDeleted(filepath.Join(r.tenantsDir(), n)); err != nil {
				return nil, fmt.Errorf("finish deleting tenant: %w", err)
			}
			continue
		}
		if tid, err := id.ParseTenantID(n); err == nil {
			ids = append(ids, tid)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	return ids, nil
}

// Close stops the background loops, waits for them, flushes every loaded
// timeline and closes its files. It returns the first error.
func (r *Repository) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	var first error
	for _, tl := range r.loadedTimelines() {
		// Not cancellable: this is the last chance to make memory durable.
		if err := tl.Flush(context.Background()); err != nil && first == nil {
			first = err
		}
	}
	if r.remote != nil {
		// What the last flush wrote goes to remote storage too, if it
		// can in a while; otherwise it goes at the next start.
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.UploadTimeout)
		r.uploadAll(ctx)
		cancel()
	}
	for _, tl := range r.loadedTimelines() {
		if err := tl.close(); err != nil && first == nil {
			first = err
		}
	}
	r.env.Close()
	return first
}

// loadedTimelines returns every loaded timeline of every loaded tenant.
func (r *Repository) loadedTimelines() []*Timeline {
	r.mu.Lock()
	tenants := make([]*Tenant, 0, len(r.tenants))
	for _, tn := range r.tenants {
		tenants = append(tenants, tn)
	}
	r.mu.Unlock()
	var tls []*Timeline
	for _, tn := range tenants {
		tls = append(tls, tn.loaded()...)
	}
	return tls
}

// requestFlush wakes the flush loop.
func (r *Repository) requestFlush() {
	select {
	case r.flushCh <- struct{}{}:
	default:
	}
}

// startLoop runs work every interval (and whenever wake fires) until ctx
// ends; an interval of zero disables the loop.
func (r *Repository) startLoop(ctx context.Context, name string, interval time.Duration, wake <-chan struct{}, work func(context.Context)) {
	if interval == 0 {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				r.log.Debug().Str("loop", name).Msg("stopping background loop")
				return
			case <-t.C:
			case <-wake:
			}
			work(ctx)
		}
	}()
}

// The background loops that work timeline by timeline.
const (
	loopFlush = iota
	loopCompaction
	loopGC
	numLoops
)

// loopNames names the loops in the log.
var loopNames = [numLoops]string{loopFlush: "flush", loopCompaction: "compaction", loopGC: "gc"}

// eachTimeline runs work on every loaded timeline, each on a goroutine of
// its own, and skips a timeline that the loop's previous round is still
// working on: a timeline whose disk does not answer (a stalled fsync, a
// hung file system) holds up its own background work, never another
// timeline's. Close waits for the goroutines (r.wg).
//
// With a wait, the timelines take turns: the next starts when the one
// before is done or has worked for wait, whichever comes first. That
// keeps work that holds many layer files open (compaction) to about one
// timeline at a time, as the open-file limit assumes, while a stalled one
// holds the others up for wait only.
func (r *Repository) eachTimeline(ctx context.Context, loop int, wait time.Duration, work func(context.Context, *Timeline)) {
	for _, tl := range r.loadedTimelines() {
		busy := &tl.busy[loop]
		if !busy.CompareAndSwap(false, true) {
			continue
		}
		done := make(chan struct{})
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(done)
			defer busy.Store(false)
			work(ctx, tl)
		}()
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-done:
		case <-t.C:
			// A long compaction is no fault: a disk that does not
			// answer is reported by the stall check (FlushStalled).
			tl.log.Info().Str("loop", loopNames[loop]).Dur("waited", wait).Msg("background work on the timeline takes longer; the next timeline's starts meanwhile")
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// takeTurnsFor is how long a background compaction or GC of one timeline
// holds up the next timeline's (eachTimeline).
const takeTurnsFor = 10 * time.Second

// flushAll freezes in-memory layers older than the checkpoint timeout and
// flushes every frozen layer.
func (r *Repository) flushAll(ctx context.Context) {
	r.eachTimeline(ctx, loopFlush, 0, flushTimeline)
}

// flushTimeline is flushAll's work on one timeline.
func flushTimeline(ctx context.Context, tl *Timeline) {
	if age, nonEmpty := tl.openLayerAge(); nonEmpty && age >= time.Duration(tl.tenant.Config().CheckpointTimeout) {
		tl.Freeze()
	}
	if err := tl.flushFrozen(ctx); err != nil && ctx.Err() == nil {
		tl.log.Error().Err(err).Msg("background flush")
	}
}

func (r *Repository) compactAll(ctx context.Context) {
	r.eachTimeline(ctx, loopCompaction, takeTurnsFor, func(ctx context.Context, tl *Timeline) {
		if err := tl.Compact(ctx); err != nil && ctx.Err() == nil {
			if vfs.IsDiskFull(err) {
				r.disk.Note(err)
			}
			tl.log.Error().Err(err).Msg("background compaction")
		}
	})
}

func (r *Repository) gcAll(ctx context.Context) {
	r.eachTimeline(ctx, loopGC, takeTurnsFor, func(ctx context.Context, tl *Timeline) {
		if err := tl.GC(ctx); err != nil && ctx.Err() == nil {
			tl.log.Error().Err(err).Msg("background GC")
		}
	})
}
