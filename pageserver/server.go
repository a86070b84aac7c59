package pageserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/pageserver/pageservice"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/walredo"
)

// Version is the page server's version, as identify_system reports it.
const Version = "0.1.0"

// walredoDirName is the WAL redo processes' scratch directory in the page
// server's working directory.
const walredoDirName = "walredo"

// importDirName holds data directories being imported, each in its own
// temporary directory removed when the import ends.
const importDirName = "import"

// Server is the page server: the repository of every tenant, the WAL
// receivers of their timelines, the page service (libpq) and the HTTP API.
type Server struct {
	dir     string
	cfg     Config
	log     zerolog.Logger
	started time.Time

	redo    *walredo.Manager
	repo    *repo.Repository
	tenants *tenants
	metrics *metrics
	// verifier checks tokens; nil when auth is off.
	verifier *auth.Verifier
	// tls serves both listeners; nil without TLS.
	tls *tls.Config
	// walDisk says whether the WAL store's writes find the disk full; the
	// repository's own says it of layer files and metadata.
	walDisk vfs.DiskState

	closeOnce sync.Once
	closeErr  error
}

// NewServer opens the page server whose working directory is dir
// (pageserver.toml, tenants/, the WAL redo scratch directory): the WAL
// redo manager, the repository, and every tenant and timeline in it. It
// serves nothing until Run.
func NewServer(ctx context.Context, dir string, cfg Config, log zerolog.Logger) (*Server, error) {
	return newServer(ctx, dir, cfg, log, "")
}

// newServer is NewServer with the path of the WAL redo module (empty:
// cfg.WalredoModule, or the one built into the binary), which tests set.
func newServer(ctx context.Context, dir string, cfg Config, log zerolog.Logger, walredoExtension string) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("page server directory: %w", err)
	}
	// Leftovers of imports interrupted by a crash.
	if err := os.RemoveAll(filepath.Join(dir, importDirName)); err != nil {
		return nil, fmt.Errorf("remove interrupted imports: %w", err)
	}
	fp, err := ingestFailpointFromEnv()
	if err != nil {
		return nil, err
	}
	if fp != nil {
		log.Warn().Str(FailIngestEnv, fp.spec).Msg("ingest failure injection is on: the ingest of matching records will fail")
	}
	failDelete, err := deleteFailpointFromEnv()
	if err != nil {
		return nil, err
	}
	if failDelete != "" {
		log.Warn().Str(FailDeleteEnv, failDelete).Msg("delete failure injection is on: a branch delete kills the page server")
	}
	s := &Server{dir: dir, cfg: cfg, log: log, started: time.Now(), metrics: newMetrics()}
	if cfg.AuthPublicKey != "" {
		if s.verifier, err = auth.LoadVerifier(cfg.AuthPublicKey); err != nil {
			return nil, fmt.Errorf("auth_public_key: %w", err)
		}
	}
	if cfg.TLSCert != "" {
		if s.tls, err = auth.ServerTLS(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, err
		}
	}
	log.Info().Bool("auth", s.verifier != nil).Bool("tls", s.tls != nil).Msg("security")

	rcfg := walredo.DefaultConfig()
	rcfg.Dir = filepath.Join(dir, walredoDirName)
	rcfg.BinDir = cfg.PGBinDir
	rcfg.ProcessesPerTenant = cfg.RedoProcesses
	rcfg.IdleTimeout = time.Duration(cfg.WalredoIdleTimeout)
	rcfg.Extension = cfg.WalredoModule
	if walredoExtension != "" {
		rcfg.Extension = walredoExtension
	}
	s.redo, err = walredo.Open(ctx, rcfg, log)
	if err != nil {
		return nil, fmt.Errorf("open WAL redo: %w", err)
	}
	repoCfg := repo.DefaultConfig(dir)
	repoCfg.Redo = s.metrics.timeRedo(repoRedo(s.redo))
	repoCfg.Logger = log
	repoCfg.FS = cfg.FS
	repoCfg.CompactionInterval = time.Duration(cfg.CompactionPeriod)
	repoCfg.GCInterval = time.Duration(cfg.GCPeriod)
	repoCfg.PageCacheSize = cfg.PageCacheSize
	repoCfg.BlockCacheSize = cfg.BlockCacheSize
	repoCfg.InMemoryLayerLimit = cfg.InMemoryLayerLimit
	repoCfg.MaxOpenLayerFiles = cfg.MaxOpenLayerFiles
	repoCfg.TenantFiles = []string{branchesFileName}
	repoCfg.LayerDiskBudget = cfg.LayerDiskBudget
	if repoCfg.Remote, err = remote.Open(ctx, cfg.RemoteStorage); err != nil {
		s.redo.Close()
		return nil, err
	}
	if repoCfg.Remote != nil {
		log.Info().Str("remote_storage", cfg.RemoteStorage.URL).Msg("layers are uploaded to remote storage")
	}
	s.repo, err = repo.Open(repoCfg)
	if err != nil {
		s.redo.Close()
		return nil, fmt.Errorf("open repository: %w", err)
	}
	s.tenants = &tenants{
		repo: s.repo, workdir: dir, conf: s.tenantConfig(),
		openWAL: timelineWALOpener(fp, cfg.Client, &s.walDisk, cfg.FS), runner: &walRunner{}, log: log, failDelete: failDelete,
		stallThreshold: time.Duration(cfg.StallThreshold),
	}
	if err := loadTenants(ctx, s.tenants); err != nil {
		s.Close()
		return nil, fmt.Errorf("load tenants: %w", err)
	}
	s.metrics.register(s)
	log.Info().Str("dir", dir).Int("tenants", len(s.tenants.list())).Msg("page server opened")
	return s, nil
}

// authenticator is the page service's password check when auth is on:
// the password is a token, kept as the session's *auth.Claims.
func (s *Server) authenticator() func(context.Context, map[string]string, string) (any, error) {
	if s.verifier == nil {
		return nil
	}
	return func(_ context.Context, _ map[string]string, password string) (any, error) {
		return s.verifier.Verify(password)
	}
}

// tenantConfig is the settings of tenants this server creates.
func (s *Server) tenantConfig() repo.TenantConfig {
	c := repo.DefaultTenantConfig()
	c.CheckpointDistance = s.cfg.CheckpointDistance
	c.CheckpointTimeout = s.cfg.CheckpointTimeout
	c.GCHorizon = s.cfg.GCHorizon
	c.PITRInterval = s.cfg.PITRInterval
	return c
}

// Run serves the page service on pg and the HTTP API on httpLn, and runs
// every timeline's WAL receiver, until ctx ends or one of them fails; then
// it closes the server (the repository's last flush included) and returns
// the first error, nil after a cancellation.
func (s *Server) Run(ctx context.Context, pg, httpLn net.Listener) error {
	var g run.Group
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			<-ctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	{
		ctx, cancel := context.WithCancel(ctx)
		srv := pgwire.NewServer(pgwire.Config{
			ServerVersion: "15.0 (zenith page server " + Version + ")",
			TLS:           s.tls,
			RequireTLS:    s.tls != nil,
			Authenticate:  s.authenticator(),
		}, pageservice.New(pageservice.Config{
			Tenants:   serverTenants{s},
			Metrics:   pageservice.Metrics{PageRequests: s.metrics.pageRequests, GetPageSeconds: s.metrics.getPageSeconds, Basebackups: s.metrics.basebackups},
			ImportDir: filepath.Join(s.dir, importDirName),
			Version:   Version,
			Log:       s.log,
		}), s.log.With().Str("component", "page_service").Logger())
		g.Add(func() error {
			s.log.Info().Str("addr", pg.Addr().String()).Msg("page service listening")
			return srv.Serve(ctx, pg)
		}, func(error) {
			s.log.Info().Msg("stopping the page service")
			cancel()
		})
	}
	{
		hs := httpapi.New(s.httpAPIConfig()).Server()
		if s.tls != nil {
			httpLn = tls.NewListener(httpLn, s.tls)
		}
		g.Add(func() error {
			s.log.Info().Str("addr", httpLn.Addr().String()).Msg("HTTP API listening")
			if err := hs.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("HTTP API: %w", err)
			}
			return nil
		}, func(error) {
			s.log.Info().Msg("stopping the HTTP API")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil {
				hs.Close()
			}
		})
	}
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			// After each GC period: GC moves the cut-offs that
			// trimWAL goes by.
			tick := time.NewTicker(time.Duration(s.cfg.GCPeriod))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
					s.tenants.trimWAL()
				}
			}
		}, func(error) {
			s.log.Info().Msg("stopping the WAL store trimming")
			cancel()
		})
	}
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			s.tenants.runner.run(ctx)
			return nil
		}, func(error) {
			s.log.Info().Msg("stopping the WAL receivers")
			cancel()
		})
	}
	err := g.Run()
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close flushes and closes the repository and stops the WAL redo
// processes. Run calls it; call it directly only for a server that never
// ran.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.tenants.close()
		s.log.Info().Msg("closing the repository")
		if err := s.repo.Close(); s.closeErr == nil {
			s.closeErr = err
		}
		if err := s.redo.Close(); s.closeErr == nil {
			s.closeErr = err
		}
		s.log.Info().Msg("page server stopped")
	})
	return s.closeErr
}

// Status is the page server's summary, as `status` and GET /v1/status
// report it.
type Status struct {
	Version       string `json:"version"`
	Tenants       int    `json:"tenants"`
	Timelines     int    `json:"timelines"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	// Memory is what the server holds in memory, next to the limits.
	Memory MemoryStatus `json:"memory"`
	// DiskFull says why writes fail for a full disk (ENOSPC, EDQUOT) and
	// since when; empty while the last writes succeed. Ingest waits
	// meanwhile and goes on by itself once space is freed.
	DiskFull      string `json:"disk_full,omitempty"`
	DiskFullSince string `json:"disk_full_since,omitempty"`
	// DiskFullErrors counts the writes that failed for a full disk.
	DiskFullErrors int64 `json:"disk_full_errors"`
	// WALStoreError names the timeline whose WAL store has failed
	// longest (a write, fsync or cut: full disk, I/O error) and why,
	// and since when; empty while every WAL store works. Its receiver
	// cut it back to its synced end and tries again with backoff.
	WALStoreError      string `json:"wal_store_error,omitempty"`
	WALStoreErrorSince string `json:"wal_store_error_since,omitempty"`
	// Stalled names the timeline whose write (a step of its layer flush,
	// its WAL store's write or fsync) has been in progress longest, if
	// for longer than stall_threshold, and since when; StalledTimelines
	// counts the timelines stalled. The others go on meanwhile.
	Stalled          string `json:"stalled,omitempty"`
	StalledSince     string `json:"stalled_since,omitempty"`
	StalledTimelines int    `json:"stalled_timelines"`
}

func (s *Server) status() Status {
	st := Status{Version: Version, UptimeSeconds: int64(time.Since(s.started).Seconds()), Memory: s.memoryStatus()}
	st.DiskFull, st.DiskFullSince, st.DiskFullErrors = s.diskFull()
	var failing, stalled time.Time
	now := time.Now()
	for _, t := range s.tenants.list() {
		st.Tenants++
		st.Timelines += len(t.tn.Timelines())
		for _, info := range t.tn.Timelines() {
			w := t.walOf(info.ID)
			if tl, err := t.tn.Timeline(info.ID); err == nil {
				if op, since := timelineStall(tl, w, now, s.tenants.stallThreshold); op != "" {
					st.StalledTimelines++
					if stalled.IsZero() || since.Before(stalled) {
						stalled = since
						st.Stalled = fmt.Sprintf("timeline %s of tenant %s: %s", info.ID, t.id, op)
					}
				}
			}
			if w == nil {
				continue
			}
			if ws := w.Status(); ws.StoreError != "" && (failing.IsZero() || ws.StoreErrorSince.Before(failing)) {
				failing = ws.StoreErrorSince
				st.WALStoreError = fmt.Sprintf("timeline %s of tenant %s: %s", info.ID, t.id, ws.StoreError)
			}
		}
	}
	if !failing.IsZero() {
		st.WALStoreErrorSince = failing.UTC().Format(time.RFC3339)
	}
	if !stalled.IsZero() {
		st.StalledSince = stalled.UTC().Format(time.RFC3339)
	}
	return st
}

// diskFull reports the repository's and the WAL store's disk-full state:
// the error of the one full longer, when it became full, and the failed
// writes of both.
func (s *Server) diskFull() (reason, since string, errors int64) {
	var first time.Time
	for _, d := range []*vfs.DiskState{s.repo.DiskState(), &s.walDisk} {
		at, n, err := d.Full()
		errors += n
		if err != nil && (first.IsZero() || at.Before(first)) {
			first, reason = at, err.Error()
		}
	}
	if !first.IsZero() {
		since = first.UTC().Format(time.RFC3339)
	}
	return reason, since, errors
}

// createTenant creates a tenant with the given id, or a fresh one if tid
// is zero, attached at generation gen (0: none; see repo.Generation).
func (s *Server) createTenant(ctx context.Context, tid id.TenantID, gen repo.Generation) (*tenant, error) {
	if tid.IsZero() {
		tid = id.NewTenantID()
	}
	return s.tenants.create(ctx, tid, gen)
}

// branchInfo describes branch b of t.
func (s *Server) branchInfo(ctx context.Context, t *tenant, b Branch, sizes bool) (api.BranchInfo, error) {
	tl, err := t.tn.Timeline(b.Timeline)
	if err != nil {
		return api.BranchInfo{}, err
	}
	info := api.BranchInfo{
		Name: b.Name, Timeline: b.Timeline,
		LastRecordLSN: tl.LastRecordLSN(), PrevRecordLSN: api.OptionalLSN(tl.PrevRecordLSN()),
		DiskConsistentLSN: tl.DiskConsistentLSN(), GCCutoffLSN: tl.GCCutoff(), RemoteConsistentLSN: tl.RemoteConsistentLSN(),
	}
	if sizes {
		sz := t.sizes(ctx, tl)
		info.LogicalSize, info.LayerBytes, info.WALBytes = sz.Logical, sz.Layers, sz.WAL
	}
	if stop := tl.IngestStopped(); stop != nil {
		info.IngestStopped = stop.Error()
	}
	if w := t.walOf(b.Timeline); w != nil {
		info.AcknowledgedLSN = w.Acknowledged()
	}
	if a, at := tl.Ancestor(); !a.IsZero() {
		info.AncestorTimeline, info.AncestorLSN = a.String(), api.OptionalLSN(at)
		if ab, ok := t.branchOf(a); ok {
			info.AncestorName = ab.Name
		}
	}
	return info, nil
}

// branchInfos describes every branch of t, ordered by name.
func (s *Server) branchInfos(ctx context.Context, t *tenant) ([]api.BranchInfo, error) {
	var infos []api.BranchInfo
	for _, b := range t.Branches() {
		info, err := s.branchInfo(ctx, t, b, true)
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// createBranch creates branch name of t at start: a branch's last record,
// an LSN of its history (waited for if not ingested yet; it must be a
// record boundary), or the last commit at or before a time.
func (s *Server) createBranch(ctx context.Context, t *tenant, name string, start api.StartPoint) (api.BranchInfo, error) {
	anc, err := t.timeline(start.Branch)
	if err != nil {
		return api.BranchInfo{}, err
	}
	lsn := start.LSN
	switch {
	case lsn == 0 && start.Time.IsZero():
		// The compute had its commits acknowledged once their WAL was
		// stored here, which may be before it is ingested: the branch
		// must hold them.
		if w := t.walOf(anc.ID()); w != nil {
			if err := s.waitForLSN(ctx, anc, w.Acknowledged()); err != nil {
				return api.BranchInfo{}, err
			}
		}
		if _, err := pageservice.LatestLSN(anc); err != nil {
			return api.BranchInfo{}, err
		}
	case !start.Time.IsZero():
		if lsn, err = t.lsnForTime(ctx, anc, start.Time); err != nil {
			return api.BranchInfo{}, err
		}
	case lsn != 0:
		if err := s.waitForLSN(ctx, anc, lsn); err != nil {
			return api.BranchInfo{}, err
		}
		if _, err := t.recordBefore(ctx, anc, lsn); err != nil {
			return api.BranchInfo{}, err
		}
	}
	b, err := t.createBranch(ctx, name, anc, lsn)
	if err != nil {
		return api.BranchInfo{}, err
	}
	return s.branchInfo(ctx, t, b, true)
}

// walRunner runs the WAL receivers of the loaded timelines for as long as
// the server runs: those loaded at start and those created later.
type walRunner struct {
	mu      sync.Mutex
	ctx     context.Context // nil until run
	pending []func(context.Context)
	wg      sync.WaitGroup
}

// start runs w's receiver once the runner runs (at once if it does); the
// function it returns stops that receiver and waits for it.
func (r *walRunner) start(w timelineWAL, log zerolog.Logger) (stop func()) {
	var (
		once   sync.Once
		cancel = make(chan struct{})
		done   = make(chan struct{})
	)
	run := func(ctx context.Context) {
		defer r.wg.Done()
		defer close(done)
		ctx, stopRun := context.WithCancel(ctx)
		defer stopRun()
		go func() {
			select {
			case <-cancel:
				stopRun()
			case <-ctx.Done():
			}
		}()
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("WAL receiver stopped")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wg.Add(1)
	if r.ctx == nil {
		r.pending = append(r.pending, run)
	} else {
		go run(r.ctx)
	}
	return func() {
		once.Do(func() { close(cancel) })
		r.mu.Lock()
		started := r.ctx != nil
		r.mu.Unlock()
		if started {
			<-done
		}
	}
}

// run starts every receiver and waits, until ctx ends, for them to stop.
func (r *walRunner) run(ctx context.Context) {
	r.mu.Lock()
	r.ctx = ctx
	for _, run := range r.pending {
		go run(ctx)
	}
	r.pending = nil
	r.mu.Unlock()
	<-ctx.Done()
	r.wg.Wait()
}
