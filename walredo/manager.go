package walredo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// Config configures a Manager.
type Config struct {
	// Dir is the scratch directory the Manager owns (see the package doc).
	Dir string
	// BinDir holds PostgreSQL 15's programs; empty means pgcluster's
	// search (FindBinDir).
	BinDir string
	// Extension is the path of a built redo module (zenith_walredo.so)
	// to use instead of the one embedded in the binary (EmbeddedModule).
	Extension string
	// CacheDir is where the module is written for PostgreSQL to load;
	// empty means ModuleCacheDir.
	CacheDir string
	// ProcessesPerTenant is the most redo processes one tenant gets.
	ProcessesPerTenant int
	// RequestTimeout bounds each request; a process that misses it is
	// killed.
	RequestTimeout time.Duration
	// StartTimeout bounds the start of a process.
	StartTimeout time.Duration
	// IdleTimeout retires a process no request has used for that long
	// (each holds a PostgreSQL backend's memory and a scratch slot); the
	// tenant's next request starts one again. 0 keeps them.
	IdleTimeout time.Duration
}

// DefaultConfig returns the defaults, with Dir still to be set.
func DefaultConfig() Config {
	return Config{
		ProcessesPerTenant: 2,
		RequestTimeout:     30 * time.Second,
		StartTimeout:       60 * time.Second,
		IdleTimeout:        10 * time.Minute,
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("walredo: Dir is not set")
	case c.ProcessesPerTenant < 1:
		return fmt.Errorf("walredo: ProcessesPerTenant is %d, want at least 1", c.ProcessesPerTenant)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("walredo: RequestTimeout is %v, want more than 0", c.RequestTimeout)
	case c.StartTimeout <= 0:
		return fmt.Errorf("walredo: StartTimeout is %v, want more than 0", c.StartTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("walredo: IdleTimeout is %v, want 0 (never) or more", c.IdleTimeout)
	}
	return nil
}

// Manager runs the redo processes of every tenant.
type Manager struct {
	cfg     Config
	log     zerolog.Logger
	user    *pgcluster.OSUser
	scratch *scratch

	mu     sync.Mutex
	pools  map[string]*pool
	closed bool
	starts sync.WaitGroup // process starts in progress

	retired    atomic.Uint64 // processes retired as idle
	stopReaper chan struct{} // closed by Close
	reaperDone chan struct{}
}

// Stats are a Manager's figures, for status and metrics.
type Stats struct {
	// Processes is the number of live redo processes, of all tenants.
	Processes int
	// Retired counts the processes retired after IdleTimeout unused.
	Retired uint64
}

// Stats returns the Manager's figures now.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	pools := make([]*pool, 0, len(m.pools))
	for _, pl := range m.pools {
		pools = append(pools, pl)
	}
	m.mu.Unlock()
	st := Stats{Retired: m.retired.Load()}
	for _, pl := range pools {
		pl.mu.Lock()
		for _, p := range pl.procs {
			if !p.isDead() {
				st.Processes++
			}
		}
		pl.mu.Unlock()
	}
	return st
}

// reap retires idle processes every half IdleTimeout until Close.
func (m *Manager) reap() {
	defer close(m.reaperDone)
	t := time.NewTicker(max(m.cfg.IdleTimeout/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-m.stopReaper:
			return
		case now := <-t.C:
			m.mu.Lock()
			pools := make([]*pool, 0, len(m.pools))
			for _, pl := range m.pools {
				pools = append(pools, pl)
			}
			m.mu.Unlock()
			for _, pl := range pools {
				for _, p := range pl.idle(now, m.cfg.IdleTimeout) {
					m.retired.Add(1)
					pl.log.Info().Int("pid", p.cmd.Process.Pid).Dur("idle_timeout", m.cfg.IdleTimeout).Msg("retiring an idle walredo process")
					p.close(10 * time.Second)
				}
			}
		}
	}
}

// Open prepares cfg.Dir (installs the module in the cache directory,
// creates the template data directory on first use, checks that this
// PostgreSQL loads the module) and returns a Manager. It starts no
// process. A module this PostgreSQL cannot load fails with an
// *IncompatibleModuleError.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	binDir, err := pgcluster.FindBinDir(ctx, cfg.BinDir)
	if err != nil {
		return nil, err
	}
	cfg.BinDir = binDir
	module, err := FindModule(cfg.Extension)
	if err != nil {
		return nil, err
	}
	if cfg.CacheDir == "" {
		if cfg.CacheDir, err = ModuleCacheDir(); err != nil {
			return nil, err
		}
	}
	user, err := pgcluster.ServerUser()
	if err != nil {
		return nil, err
	}
	log = log.With().Str("component", "walredo").Logger()
	sc, err := openScratch(ctx, cfg.Dir, binDir, cfg.CacheDir, module, user, log)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: log, user: user, scratch: sc, pools: make(map[string]*pool),
		stopReaper: make(chan struct{}), reaperDone: make(chan struct{})}
	if cfg.IdleTimeout > 0 {
		go m.reap()
	} else {
		close(m.reaperDone)
	}
	return m, nil
}

// Close stops every redo process. Requests in flight fail.
func (m *Manager) Close() error {
	m.mu.Lock()
	if !m.closed {
		close(m.stopReaper)
	}
	m.closed = true
	pools := m.pools
	m.pools = nil
	m.mu.Unlock()
	<-m.reaperDone
	var wg sync.WaitGroup
	for _, pl := range pools {
		for _, p := range pl.stop() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.close(10 * time.Second)
			}()
		}
	}
	wg.Wait()
	m.starts.Wait() // each closes the process it started
	return nil
}

// pool returns the tenant's pool, creating it on first use.
func (m *Manager) pool(tenant string) (*pool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	pl := m.pools[tenant]
	if pl == nil {
		pl = &pool{m: m, tenant: tenant, log: m.log.With().Str("tenant", tenant).Logger(), used: map[*process]time.Time{}}
		m.pools[tenant] = pl
	}
	return pl, nil
}

// request sends one frame to one of the tenant's processes.
func (m *Manager) request(ctx context.Context, tenant string, frame []byte) ([]byte, error) {
	pl, err := m.pool(tenant)
	if err != nil {
		return nil, err
	}
	p, err := pl.acquire(ctx)
	if err != nil {
		return nil, err
	}
	return p.do(ctx, frame)
}

// pool is one tenant's redo processes.
type pool struct {
	m      *Manager
	tenant string
	log    zerolog.Logger

	mu       sync.Mutex
	procs    []*process
	starting *pending // a process being started, if any
	stopped  bool
	// used is when acquire last handed out each process: one handed out
	// is not idle, even before its request counts as in flight.
	used map[*process]time.Time
}

// idle removes from the pool and returns the processes with no request in
// flight that acquire has not handed out for timeout.
func (pl *pool) idle(now time.Time, timeout time.Duration) []*process {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []*process
	keep := pl.procs[:0]
	for _, p := range pl.procs {
		if !p.isDead() && p.inflight.Load() == 0 && now.Sub(pl.used[p]) >= timeout {
			out = append(out, p)
			delete(pl.used, p)
			continue
		}
		keep = append(keep, p)
	}
	pl.procs = keep
	return out
}

// pending is a process start in progress.
type pending struct {
	done chan struct{}
	err  error
}

// acquire returns the least busy live process, starting one when the
// tenant has none, or when all are busy and the pool may grow (requests
// meanwhile pipeline into the busy ones).
func (pl *pool) acquire(ctx context.Context) (*process, error) {
	for {
		pl.mu.Lock()
		if pl.stopped {
			pl.mu.Unlock()
			return nil, ErrClosed
		}
		live := pl.procs[:0]
		for _, p := range pl.procs {
			if !p.isDead() {
				live = append(live, p)
			} else {
				delete(pl.used, p)
			}
		}
		pl.procs = live
		var best *process
		for _, p := range pl.procs {
			if best == nil || p.inflight.Load() < best.inflight.Load() {
				best = p
			}
		}
		if pl.starting == nil && (best == nil || best.inflight.Load() > 0 && len(pl.procs) < pl.m.cfg.ProcessesPerTenant) {
			pl.startLocked()
		}
		st := pl.starting
		if best != nil {
			pl.used[best] = time.Now()
		}
		pl.mu.Unlock()
		if best != nil {
			return best, nil
		}
		select {
		case <-st.done:
			if st.err != nil {
				return nil, st.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// startLocked starts a process in the background; pl.mu is held.
func (pl *pool) startLocked() {
	st := &pending{done: make(chan struct{})}
	pl.starting = st
	pl.m.starts.Add(1)
	go func() {
		defer pl.m.starts.Done()
		p, err := pl.start()
		pl.mu.Lock()
		pl.starting = nil
		switch {
		case err != nil:
			st.err = err
		case pl.stopped:
			st.err = ErrClosed
			defer p.close(10 * time.Second) // before starts.Done
		default:
			pl.procs = append(pl.procs, p)
			pl.used[p] = time.Now()
		}
		pl.mu.Unlock()
		close(st.done)
	}()
}

func (pl *pool) start() (*process, error) {
	m := pl.m
	sl, err := m.scratch.acquire()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StartTimeout)
	defer cancel()
	p, err := startProcess(ctx, m.cfg.BinDir, m.scratch.libDir, m.user, sl, pl.tenant, m.cfg.RequestTimeout, pl.log,
		func() { m.scratch.release(sl) })
	if err != nil {
		m.scratch.release(sl)
		pl.log.Error().Err(err).Msg("could not start a walredo process")
		return nil, err
	}
	return p, nil
}

// stop marks the pool stopped and returns its processes for closing.
func (pl *pool) stop() []*process {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.stopped = true
	procs := pl.procs
	pl.procs = nil
	return procs
}
