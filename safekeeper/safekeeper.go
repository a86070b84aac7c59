package safekeeper

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

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Config configures a Safekeeper.
type Config struct {
	// ID names this safekeeper among its peers: the compute sees it as
	// application_name safekeeper<ID> with slot safekeeper_<ID>.
	ID uint64
	// Dir is the data directory.
	Dir string
	// Peers are the HTTP addresses (host:port) of the other safekeepers
	// of the same set; the quorum is a majority of len(Peers)+1.
	Peers []string
	// PollInterval is how often the peers' flush LSNs are polled for the
	// commit LSN (default 100 ms).
	PollInterval time.Duration
	// Verifier checks the tokens of clients (libpq password, HTTP
	// bearer); nil: auth off, every client is trusted.
	Verifier *auth.Verifier
	// TLS serves both listeners; nil: no TLS. With it, libpq sessions
	// without TLS are refused.
	TLS *tls.Config
	// Client is what this safekeeper presents to its peers: a token and
	// the CA of their certificates.
	Client auth.ClientOptions
	// FS is the file system of the WAL segments; nil: the operating
	// system's (vfs.Default). Tests put a vfs.Faulty there to hold or
	// fail the WAL's fsyncs.
	FS vfs.FS
}

// Safekeeper serves the timelines under one data directory.
type Safekeeper struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics

	mu        sync.Mutex
	timelines map[timelineKey]*Timeline
	// runCtx is Run's context, for the streams Run did not start itself;
	// nil outside Run.
	runCtx context.Context
	wg     sync.WaitGroup
	// catchingUp holds the timelines catching up from a peer (recovery.go).
	catchingUp map[timelineKey]bool
	// deleted holds the timelines deleted here (their tombstones, see
	// deletedSuffix): a peer that has not deleted one yet must not make
	// catch-up create it again (zenith deletes a timeline from one
	// safekeeper after another).
	deleted map[timelineKey]bool
	// disk says whether WAL writes find the disk full (GET /v1/memory).
	disk vfs.DiskState
}

type timelineKey struct {
	tenant   id.TenantID
	timeline id.TimelineID
}

// Open opens the data directory (creating it if needed) and every
// timeline in it. A corrupt timeline fails the open.
func Open(cfg Config, log zerolog.Logger) (*Safekeeper, error) {
	if cfg.ID == 0 {
		return nil, errors.New("safekeeper id must be at least 1")
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	if err := vfs.MkdirDurable(vfs.Default, cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create safekeeper directory: %w", err)
	}
	s := &Safekeeper{cfg: cfg, log: log.With().Uint64("safekeeper", cfg.ID).Logger(),
		timelines: map[timelineKey]*Timeline{}, deleted: map[timelineKey]bool{}, metrics: newMetrics()}
	tenants, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	for _, te := range tenants {
		tenant, err := id.ParseTenantID(te.Name())
		if err != nil || !te.IsDir() {
			continue
		}
		tls, err := os.ReadDir(filepath.Join(cfg.Dir, te.Name()))
		if err != nil {
			s.closeTimelines()
			return nil, fmt.Errorf("list timelines: %w", err)
		}
		for _, e := range tls {
			if timeline, marked, err := openDeleted(filepath.Join(cfg.Dir, te.Name()), e.Name()); marked || err != nil {
				if err != nil {
					s.closeTimelines()
					return nil, fmt.Errorf("finish deleting timeline: %w", err)
				}
				s.deleted[timelineKey{tenant, timeline}] = true
				continue
			}
			timeline, err := id.ParseTimelineID(e.Name())
			if err != nil || !e.IsDir() {
				continue
			}
			tl, err := openTimeline(s.cfg.FS, s.timelineDir(tenant, timeline), tenant, timeline, s.log)
			if err != nil {
				s.closeTimelines()
				return nil, fmt.Errorf("open timeline %s/%s: %w", tenant, timeline, err)
			}
			tl.disk = &s.disk
			s.timelines[timelineKey{tenant, timeline}] = tl
		}
	}
	return s, nil
}

func (s *Safekeeper) timelineDir(tenant id.TenantID, timeline id.TimelineID) string {
	return filepath.Join(s.cfg.Dir, tenant.String(), timeline.String())
}

// Timeline returns a timeline, creating it if create is set; nil if it
// does not exist and create is not set.
func (s *Safekeeper) Timeline(tenant id.TenantID, timeline id.TimelineID, create bool) (*Timeline, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := timelineKey{tenant, timeline}
	if tl := s.timelines[k]; tl != nil || !create {
		return tl, nil
	}
	if s.deleted[k] {
		return nil, fmt.Errorf("timeline %s/%s was deleted: %w", tenant, timeline, ErrTimelineDeleted)
	}
	// Durable in the safekeeper's directory before the timeline's WAL in
	// it is acknowledged: a crash must not take the tenant away.
	if err := vfs.MkdirDurable(vfs.Default, filepath.Join(s.cfg.Dir, tenant.String()), 0o755); err != nil {
		return nil, fmt.Errorf("create tenant directory: %w", err)
	}
	tl, err := createTimeline(s.cfg.FS, s.timelineDir(tenant, timeline), tenant, timeline, s.log)
	if err != nil {
		return nil, err
	}
	tl.disk = &s.disk
	s.timelines[k] = tl
	return tl, nil
}

// ErrTimelineDeleted is a creation of a timeline this safekeeper deleted:
// timeline ids are never reused, so it can only be a peer's or a
// compute's late word of it.
var ErrTimelineDeleted = errors.New("a deleted timeline is not created again")

// Timelines returns every timeline.
func (s *Safekeeper) Timelines() []*Timeline {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Timeline, 0, len(s.timelines))
	for _, tl := range s.timelines {
		out = append(out, tl)
	}
	return out
}

// Run serves libpq on pg and HTTP on httpLn (nil: none), streams from the
// computes of the current terms and polls the peers, until ctx ends.
func (s *Safekeeper) Run(ctx context.Context, pg, httpLn net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	for _, tl := range s.Timelines() {
		s.startStreaming(tl)
	}

	var g run.Group
	pcfg := pgwire.Config{ServerVersion: "15.0 (zenith safekeeper)", TLS: s.cfg.TLS, RequireTLS: s.cfg.TLS != nil}
	if v := s.cfg.Verifier; v != nil {
		pcfg.Authenticate = func(_ context.Context, _ map[string]string, password string) (any, error) {
			return v.Verify(password)
		}
	}
	srv := pgwire.NewServer(pcfg, pgwire.HandlerFunc(s.handle), s.log)
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return srv.Serve(ctx, pg) }, func(error) {
			s.log.Info().Msg("stopping the libpq listener")
			cancel()
		})
	}
	if httpLn != nil {
		if s.cfg.TLS != nil {
			httpLn = tls.NewListener(httpLn, s.cfg.TLS)
		}
		hs := &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		g.Add(func() error {
			if err := hs.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("HTTP: %w", err)
			}
			return nil
		}, func(error) {
			s.log.Info().Msg("stopping the HTTP listener")
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			hs.Shutdown(sctx)
		})
	}
	{
		ctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { s.pollPeers(ctx); return nil }, func(error) {
			s.log.Info().Msg("stopping the peer poller")
			cancel()
		})
	}
	{
		g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	}
	err := g.Run()
	cancel()
	s.mu.Lock()
	s.runCtx = nil
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Close closes every timeline, persisting its state. Call it after Run.
func (s *Safekeeper) Close() error {
	return s.closeTimelines()
}

func (s *Safekeeper) closeTimelines() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for k, tl := range s.timelines {
		if err := tl.Close(); err != nil && first == nil {
			first = err
		}
		delete(s.timelines, k)
	}
	return first
}

// quorum is the number of safekeepers that make a majority of the set.
func (s *Safekeeper) quorum() int { return (len(s.cfg.Peers)+1)/2 + 1 }
