package pageserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/pageservice"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// timelineWAL is the WAL side of one timeline: the raw-WAL store, the
// ingest and the receiver that feeds both (walstore.go, walingest.go,
// walreceiver.go). page_service_deps.go builds it; tests may cut here.
type timelineWAL interface {
	// Run streams WAL from the source until ctx ends.
	Run(ctx context.Context) error
	// SetSource sets (and persists) the compute WAL comes from; ""
	// stops streaming.
	SetSource(connStr string) error
	// SetSafekeepers sets (and persists) the safekeepers (host:port) WAL
	// comes from instead; tenant is the timeline's tenant.
	SetSafekeepers(tenant id.TenantID, addrs []string) error
	// Status describes the receiver, for status pages and metrics.
	Status() api.WALStatus
	// Acknowledged is where the WAL the page server may have
	// acknowledged ends (WalReceiver.Acknowledged).
	Acknowledged() pgdata.LSN
	// The stored WAL as the walsender serves it to read replicas.
	pageservice.ReplicaWAL
	// PrevRecord returns the start of the record of the stored WAL that
	// ends at end; an error if none does.
	PrevRecord(ctx context.Context, end pgdata.LSN) (pgdata.LSN, error)
	// FindLSNForTime returns the end of the last commit record at or
	// before t; ok is false if the stored WAL has none.
	FindLSNForTime(ctx context.Context, t time.Time) (lsn pgdata.LSN, ok bool, err error)
	// TrimBelow forgets the stored WAL's whole segments below lsn's,
	// keeping it from a record boundary at or before lsn (see
	// WALStore.TrimBelow).
	TrimBelow(lsn pgdata.LSN) error
	// StoreStalled returns the WAL store's write or fsync in progress for
	// longer than threshold, and since when ("" if none).
	StoreStalled(now time.Time, threshold time.Duration) (op string, since time.Time)
	// Close releases the store's files, once Run has returned.
	Close() error
}

// openWALFunc starts the WAL side of a timeline whose raw WAL lives in
// walDir.
type openWALFunc func(ctx context.Context, tl *repo.Timeline, walDir string, log zerolog.Logger) (timelineWAL, error)

// tenants is the page server's tenant manager: every tenant of the
// repository, its branch names and its timelines' WAL receivers.
type tenants struct {
	repo    *repo.Repository
	workdir string
	conf    repo.TenantConfig
	openWAL openWALFunc
	runner  *walRunner
	log     zerolog.Logger
	// failDelete is FailDeleteEnv's value: where a delete kills the
	// process ("" for nowhere).
	failDelete string
	// stallThreshold is when a write in progress counts as stalled
	// (Config.StallThreshold).
	stallThreshold time.Duration
	// trimWait is how long trimWAL waits for its trims (0: trimWait).
	trimWait time.Duration
	// trimming holds the WAL stores whose trim has not returned yet.
	trimMu   sync.Mutex
	trimming map[timelineWAL]bool

	attachMu sync.Mutex // one attach or detach at a time
	mu       sync.Mutex
	byID     map[id.TenantID]*tenant
}

// tenant is one tenant with its branch names.
type tenant struct {
	id  id.TenantID
	tn  *repo.Tenant
	dir string
	ts  *tenants
	log zerolog.Logger

	mu       sync.Mutex
	branches []Branch // sorted by name; saved in branches.json
	reserved map[string]bool
	wal      map[id.TimelineID]timelineWAL
	stopWAL  map[id.TimelineID]func()
	logical  map[id.TimelineID]logicalSize
}

// loadTenants opens every tenant of the repository, every timeline of
// each, and their WAL sides (started when the runner runs).
func loadTenants(ctx context.Context, ts *tenants) error {
	ids, err := ts.repo.Tenants()
	if err != nil {
		return err
	}
	ts.byID = map[id.TenantID]*tenant{}
	for _, tid := range ids {
		tn, err := ts.repo.Tenant(tid)
		if err != nil {
			return err
		}
		t, err := ts.newTenant(tn)
		if err != nil {
			return err
		}
		ts.byID[tid] = t
		if err := t.finishDeletes(); err != nil {
			return err
		}
		if err := t.finishInterruptedImports(); err != nil {
			return err
		}
		for _, info := range tn.Timelines() {
			tl, err := tn.Timeline(info.ID)
			if err != nil {
				return fmt.Errorf("tenant %s: %w", tid, err)
			}
			t.attachWAL(ctx, tl)
		}
	}
	return nil
}

func (ts *tenants) newTenant(tn *repo.Tenant) (*tenant, error) {
	dir := filepath.Join(ts.workdir, "tenants", tn.ID().String())
	branches, err := loadBranches(dir)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", tn.ID(), err)
	}
	return &tenant{
		id: tn.ID(), tn: tn, dir: dir, ts: ts, branches: branches,
		log:      ts.log.With().Str("tenant", tn.ID().String()).Logger(),
		reserved: map[string]bool{},
		wal:      map[id.TimelineID]timelineWAL{},
		stopWAL:  map[id.TimelineID]func(){},
		logical:  map[id.TimelineID]logicalSize{},
	}, nil
}

// create creates a tenant (repo.ErrTenantExists if the id is taken),
// attached at generation gen (0: none; ignored without remote storage).
func (ts *tenants) create(ctx context.Context, tid id.TenantID, gen repo.Generation) (*tenant, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	tn, err := ts.repo.CreateTenant(tid, ts.conf)
	if err != nil {
		return nil, err
	}
	if gen > 0 {
		if _, err := ts.repo.AttachTenant(ctx, tid, gen); err != nil && !errors.Is(err, repo.ErrNoRemoteStorage) {
			return nil, err
		}
	}
	t, err := ts.newTenant(tn)
	if err != nil {
		return nil, err
	}
	ts.byID[tid] = t
	return t, nil
}

// attach attaches tenant tid at generation gen (see repo.AttachTenant):
// a tenant here takes the new generation; another is restored from
// remote storage, and its timelines take WAL.
func (ts *tenants) attach(ctx context.Context, tid id.TenantID, gen repo.Generation) (*tenant, error) {
	ts.attachMu.Lock()
	defer ts.attachMu.Unlock()
	tn, err := ts.repo.AttachTenant(ctx, tid, gen)
	if err != nil {
		return nil, err
	}
	if t, err := ts.get(tid); err == nil {
		return t, nil
	}
	t, err := ts.newTenant(tn)
	if err != nil {
		return nil, err
	}
	for _, info := range tn.Timelines() {
		tl, err := tn.Timeline(info.ID)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", tid, err)
		}
		t.attachWAL(ctx, tl)
	}
	ts.mu.Lock()
	ts.byID[tid] = t
	ts.mu.Unlock()
	return t, nil
}

// detach stops serving tenant tid: its WAL receivers stop, then the
// repository uploads everything and removes it here (repo.DetachTenant).
// If that fails, the tenant is served again.
func (ts *tenants) detach(ctx context.Context, tid id.TenantID) error {
	ts.attachMu.Lock()
	defer ts.attachMu.Unlock()
	ts.mu.Lock()
	t, ok := ts.byID[tid]
	delete(ts.byID, tid)
	ts.mu.Unlock()
	if !ok {
		return fmt.Errorf("tenant %s: %w", tid, repo.ErrTenantNotFound)
	}
	tids := t.stopAllWAL()
	err := ts.repo.DetachTenant(ctx, tid)
	if err != nil {
		for _, tlid := range tids {
			if tl, lerr := t.tn.Timeline(tlid); lerr == nil {
				t.attachWAL(context.Background(), tl)
			}
		}
		ts.mu.Lock()
		ts.byID[tid] = t
		ts.mu.Unlock()
	}
	return err
}

// stopAllWAL stops the WAL side of every timeline of t and returns their
// ids.
func (t *tenant) stopAllWAL() []id.TimelineID {
	t.mu.Lock()
	tids := make([]id.TimelineID, 0, len(t.wal))
	for tl := range t.wal {
		tids = append(tids, tl)
	}
	t.mu.Unlock()
	for _, tl := range tids {
		t.detachWAL(tl)
	}
	return tids
}

// get returns a tenant (repo.ErrTenantNotFound if there is none).
func (ts *tenants) get(tid id.TenantID) (*tenant, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.byID[tid]
	if !ok {
		return nil, fmt.Errorf("tenant %s: %w", tid, repo.ErrTenantNotFound)
	}
	return t, nil
}

// list returns every tenant, ordered by id.
func (ts *tenants) list() []*tenant {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]*tenant, 0, len(ts.byID))
	for _, t := range ts.byID {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *tenant) int { return strings.Compare(a.id.String(), b.id.String()) })
	return out
}

// close closes every timeline's WAL side (after the receivers stopped) and
// returns the first error.
func (ts *tenants) close() error {
	var first error
	for _, t := range ts.list() {
		t.mu.Lock()
		for tid, w := range t.wal {
			if err := w.Close(); err != nil && first == nil {
				first = fmt.Errorf("timeline %s: %w", tid, err)
			}
		}
		t.mu.Unlock()
	}
	return first
}

// attachWAL starts the WAL side of a loaded timeline. A timeline whose WAL
// side cannot start (e.g. an import that failed half way left it without
// pg_control) is still readable; the failure is logged.
func (t *tenant) attachWAL(ctx context.Context, tl *repo.Timeline) {
	log := t.log.With().Str("timeline", tl.ID().String()).Logger()
	w, err := t.ts.openWAL(ctx, tl, t.walDir(tl.ID()), log)
	if err != nil {
		log.Error().Err(err).Msg("timeline takes no WAL")
		return
	}
	stop := t.ts.runner.start(w, log)
	t.mu.Lock()
	t.wal[tl.ID()] = w
	t.stopWAL[tl.ID()] = stop
	t.mu.Unlock()
}

// walOf returns a timeline's WAL side, nil if it has none.
func (t *tenant) walOf(tid id.TimelineID) timelineWAL {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wal[tid]
}

// Branches returns the tenant's branch names, ordered by name.
func (t *tenant) Branches() []Branch {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.branches)
}

// branchNamed returns the branch with that name.
func (t *tenant) branchNamed(name string) (Branch, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := slices.BinarySearchFunc(t.branches, name, func(b Branch, n string) int { return strings.Compare(b.Name, n) })
	if !ok {
		return Branch{}, false
	}
	return t.branches[i], true
}

// branchOf returns a branch naming timeline tid, if any.
func (t *tenant) branchOf(tid id.TimelineID) (Branch, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.branches {
		if b.Timeline == tid {
			return b, true
		}
	}
	return Branch{}, false
}

// timeline resolves a reference to a timeline: a branch name or a
// timeline id.
func (t *tenant) timeline(ref string) (*repo.Timeline, error) {
	tid, err := id.ParseTimelineID(ref)
	if err != nil {
		b, ok := t.branchNamed(ref)
		if !ok {
			return nil, fmt.Errorf("branch %q of tenant %s: %w", ref, t.id, api.ErrBranchNotFound)
		}
		tid = b.Timeline
	}
	tl, err := t.tn.Timeline(tid)
	if errors.Is(err, repo.ErrTimelineNotFound) {
		return nil, fmt.Errorf("timeline %s of tenant %s: %w", tid, t.id, api.ErrBranchNotFound)
	}
	return tl, err
}

// reserve claims a branch name for a branch being created, so that two
// concurrent creations cannot both take it.
func (t *tenant) reserve(name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, taken := slices.BinarySearchFunc(t.branches, name, func(b Branch, n string) int { return strings.Compare(b.Name, n) })
	if taken || t.reserved[name] {
		return fmt.Errorf("branch %q of tenant %s: %w", name, t.id, api.ErrBranchExists)
	}
	t.reserved[name] = true
	return nil
}

// commitBranch makes a reserved name durable; release frees it.
func (t *tenant) commitBranch(b Branch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.reserved, b.Name)
	branches := append(slices.Clone(t.branches), b)
	slices.SortFunc(branches, func(x, y Branch) int { return strings.Compare(x.Name, y.Name) })
	if err := saveBranches(t.dir, branches); err != nil {
		return err
	}
	t.branches = branches
	// The name goes to remote storage with the tenant's files.
	t.ts.repo.RequestUpload()
	t.log.Info().Str("branch", b.Name).Str("timeline", b.Timeline.String()).Stringer("start", b.Start).Msg("created branch")
	return nil
}

func (t *tenant) release(name string) {
	t.mu.Lock()
	delete(t.reserved, name)
	t.mu.Unlock()
}

// importBranch imports the cleanly shut down data directory datadir as a
// new timeline named name. The timeline is flushed before the name is
// written, so a named branch always has its import on disk. Everything
// that can be checked before the timeline exists is (the name, pg_control
// and its state); the timeline of an import that fails after that is
// deleted, and so is one that a crash interrupted, at the next start
// (markImport).
func (t *tenant) importBranch(ctx context.Context, name, datadir string, locations map[uint32]string) (Branch, error) {
	if err := t.reserve(name); err != nil {
		return Branch{}, err
	}
	defer t.release(name)
	b, err := os.ReadFile(filepath.Join(datadir, "global", "pg_control"))
	if err != nil {
		return Branch{}, fmt.Errorf("import: %w", err)
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		return Branch{}, fmt.Errorf("import: %w", err)
	}
	if cf.State != pgdata.DBShutdowned {
		return Branch{}, fmt.Errorf("import: pg_control state is %q, want %q (stop the server with pg_ctl stop -m fast first): %w",
			cf.State, pgdata.DBShutdowned, walingest.ErrNotShutDown)
	}
	// The timeline's history starts at the shutdown checkpoint record;
	// the import is stored at its end.
	tid := id.NewTimelineID()
	if err := markImport(t.dir, tid); err != nil {
		return Branch{}, err
	}
	tl, err := t.tn.CreateTimeline(tid, cf.CheckPoint)
	if err != nil {
		return Branch{}, errors.Join(err, unmarkImport(t.dir, tid))
	}
	lsn, err := walingest.ImportDataDir(ctx, tl, datadir, locations, t.log)
	if err == nil {
		if err = tl.Flush(ctx); err != nil {
			err = fmt.Errorf("import: flush: %w", err)
		}
	}
	if err != nil {
		// Nothing names the timeline yet: remove it whole.
		derr := t.tn.MarkTimelineDeleted(tl.ID())
		if derr == nil {
			derr = t.finishDelete(tl.ID())
		}
		if derr == nil {
			derr = unmarkImport(t.dir, tid)
		}
		if derr != nil {
			t.log.Error().Err(derr).Str("timeline", tl.ID().String()).Msg("cannot delete the timeline of a failed import")
		}
		return Branch{}, err
	}
	t.attachWAL(ctx, tl)
	br := Branch{Name: name, Timeline: tl.ID(), Start: lsn}
	if err := t.commitBranch(br); err != nil {
		return Branch{}, err
	}
	return br, unmarkImport(t.dir, tid)
}

// createBranch creates a timeline named name that branches from ancestor
// at lsn (a record boundary of ancestor's history).
func (t *tenant) createBranch(ctx context.Context, name string, ancestor *repo.Timeline, lsn pgdata.LSN) (Branch, error) {
	if err := t.reserve(name); err != nil {
		return Branch{}, err
	}
	defer t.release(name)
	tl, err := t.tn.Branch(ctx, id.NewTimelineID(), ancestor.ID(), lsn)
	if err != nil {
		return Branch{}, err
	}
	t.attachWAL(ctx, tl)
	_, at := tl.Ancestor()
	br := Branch{Name: name, Timeline: tl.ID(), Start: at}
	return br, t.commitBranch(br)
}

// branchesFileName is the file in a tenant's directory that names its
// timelines: <workdir>/tenants/<tenant>/branches.json.
const branchesFileName = "branches.json"

// Branch is a human name for a timeline of a tenant.
type Branch struct {
	// Name is the branch's name, unique in its tenant.
	Name string `json:"name"`
	// Timeline is the timeline the name stands for.
	Timeline id.TimelineID `json:"timeline_id"`
	// Start is where the timeline's own history starts: the import LSN of
	// a root timeline, the branch point of a child. It is a record
	// boundary even when no WAL of the timeline ends there.
	Start pgdata.LSN `json:"start_lsn"`
}

// branchesFile is the JSON document of branches.json.
type branchesFile struct {
	Branches []Branch `json:"branches"`
}

// loadBranches reads a tenant's branch names; a missing file is a tenant
// without branches.
func loadBranches(tenantDir string) ([]Branch, error) {
	path := filepath.Join(tenantDir, branchesFileName)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read branch names: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f branchesFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, br := range f.Branches {
		if err := api.CheckBranchName(br.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if i > 0 && f.Branches[i-1].Name >= br.Name {
			return nil, fmt.Errorf("%s: branch names not sorted and unique at %q", path, br.Name)
		}
	}
	return f.Branches, nil
}

// saveBranches replaces a tenant's branch names atomically: a crash
// leaves either the old or the new file, never a torn one.
func saveBranches(tenantDir string, branches []Branch) error {
	branches = slices.Clone(branches)
	slices.SortFunc(branches, func(a, b Branch) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(branchesFile{Branches: branches}, "", "  ")
	if err != nil {
		return err
	}
	if _, err := vfs.WriteFileAtomic(vfs.Default, filepath.Join(tenantDir, branchesFileName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save branch names: %w", err)
	}
	return nil
}

// trimWAL removes, for every timeline, the stored WAL that nothing can need
// any more: below both its durable LSN (where a restart, or a restore from
// remote storage, resumes ingesting; see repo.Timeline.DurableLSN) and its
// GC cut-off (below which no branch can be made and no read is answered,
// and which the PITR window and GC horizon hold back), in whole segments.
//
// Each store is trimmed on a goroutine of its own, and trimWAL waits for
// them only so long (trimWait): a trim waits for its store's writer, and
// a store whose fsync does not return (a disk that does not answer) must
// not keep the others' WAL growing. Its trim finishes once the fsync
// returns; until then later rounds skip that store.
func (ts *tenants) trimWAL() {
	var wg sync.WaitGroup
	for _, t := range ts.list() {
		t.mu.Lock()
		wals := make(map[id.TimelineID]timelineWAL, len(t.wal))
		for tid, w := range t.wal {
			wals[tid] = w
		}
		t.mu.Unlock()
		for tid, w := range wals {
			tl, err := t.tn.Timeline(tid)
			if err != nil {
				continue
			}
			lsn := min(tl.DurableLSN(), tl.GCCutoff())
			if lsn == 0 {
				continue
			}
			if !ts.startTrim(w) {
				t.log.Warn().Str("timeline", tid.String()).Msg("the WAL store's last trim has not returned yet (is its disk stalled?): not trimmed now")
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer ts.endTrim(w)
				if err := w.TrimBelow(lsn); err != nil {
					t.log.Warn().Err(err).Str("timeline", tid.String()).Stringer("lsn", lsn).Msg("remove old WAL from the WAL store")
				}
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	wait := ts.trimWait
	if wait == 0 {
		wait = trimWait
	}
	select {
	case <-done:
	case <-time.After(wait):
		ts.log.Warn().Dur("waited", wait).Msg("a WAL store's trim has not returned (is its disk stalled?); the others are done")
	}
}

// trimWait is how long trimWAL waits for the trims it started.
const trimWait = 10 * time.Second

// startTrim marks w's trim as running; false if one still is.
func (ts *tenants) startTrim(w timelineWAL) bool {
	ts.trimMu.Lock()
	defer ts.trimMu.Unlock()
	if ts.trimming[w] {
		return false
	}
	if ts.trimming == nil {
		ts.trimming = map[timelineWAL]bool{}
	}
	ts.trimming[w] = true
	return true
}

// endTrim marks w's trim as returned.
func (ts *tenants) endTrim(w timelineWAL) {
	ts.trimMu.Lock()
	delete(ts.trimming, w)
	ts.trimMu.Unlock()
}
