package walreceiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Timing of the choice between safekeepers.
const (
	// probeInterval is how often, while streaming from a safekeeper, the
	// receiver looks whether WAL still comes.
	probeInterval = time.Second
	// switchIdle is how long no WAL may come from the current safekeeper
	// before the receiver asks the others for their commit LSNs, and
	// switches to one that is ahead.
	switchIdle = 3 * time.Second
	// probeTimeout bounds asking one safekeeper for its commit LSN.
	probeTimeout = 5 * time.Second
)

// errGenerationChanged ends the stream from a safekeeper when the tenant
// takes a new attach generation: the reports of the next connection name
// the new one.
var errGenerationChanged = errors.New("the tenant's attach generation changed")

// errSafekeeperLags ends the stream from a safekeeper that sends nothing
// while another one has committed WAL we lack.
var errSafekeeperLags = errors.New("another safekeeper has a higher commit LSN")

// SafekeeperSet is a timeline's WAL source when it is a set of
// safekeepers.
type SafekeeperSet struct {
	// Tenant is the tenant the safekeepers know the timeline under (the
	// repository's timeline does not know its tenant).
	Tenant id.TenantID `json:"tenant_id"`
	// Addrs are the safekeepers' libpq listeners, host:port.
	Addrs []string `json:"addrs"`
}

func (s *SafekeeperSet) clone() *SafekeeperSet {
	if s == nil {
		return nil
	}
	return &SafekeeperSet{Tenant: s.Tenant, Addrs: slices.Clone(s.Addrs)}
}

// connString is the replication connection string for the safekeeper at
// addr: its walsender serves the timeline named in the startup options.
// They also name gen, the tenant's attach generation
// (safekeeper.GenerationParam), unless it is 0: the safekeepers remove
// WAL only by the reports of the newest generation, never by a stale
// page server's.
func (s *SafekeeperSet) connString(addr string, timeline id.TimelineID, gen repo.Generation, client auth.ClientOptions) string {
	host, port, _ := net.SplitHostPort(addr)
	opts := api.ReplicationOptions(s.Tenant, timeline)
	if gen > 0 {
		opts += " -c pageserver_generation=" + gen.String()
	}
	return fmt.Sprintf("host=%s port=%s user=pageserver dbname=replication %s connect_timeout=5 options='%s'",
		host, port, client.ConnParams(), opts)
}

// SetSafekeepers sets and persists the safekeepers (host:port) WAL is
// pulled from, replacing a compute's connection string; tenant is the
// tenant they know the timeline under. A running receiver drops its
// connection and chooses among them.
func (r *WalReceiver) SetSafekeepers(tenant id.TenantID, addrs []string) error {
	if err := api.CheckSafekeeperAddrs(addrs); err != nil {
		return fmt.Errorf("WAL source: %w", err)
	}
	if err := r.store.SetSafekeepers(&SafekeeperSet{Tenant: tenant, Addrs: slices.Clone(addrs)}); err != nil {
		return err
	}
	r.sourceChanged(func(st *WalReceiverStatus) {
		st.Source, st.Safekeepers, st.Safekeeper = "", slices.Clone(addrs), ""
	})
	return nil
}

// safekeeperProbe is one safekeeper's answer to IDENTIFY_SYSTEM.
type safekeeperProbe struct {
	addr   string
	commit pgdata.LSN // xlogpos: the commit LSN
	err    error
}

// probeSafekeepers asks each of addrs, in parallel, for its commit LSN.
// A safekeeper of another database system answers ErrSystemMismatch.
func (r *WalReceiver) probeSafekeepers(ctx context.Context, set *SafekeeperSet, addrs []string) []safekeeperProbe {
	out := make([]safekeeperProbe, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = safekeeperProbe{addr: addr}
			out[i].commit, out[i].err = r.probe(ctx, set.connString(addr, r.tl.ID(), r.tl.Generation(), r.client))
		}()
	}
	wg.Wait()
	return out
}

// probe connects to one safekeeper and returns its commit LSN.
func (r *WalReceiver) probe(ctx context.Context, connStr string) (pgdata.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := pgwire.ConnectReplicationAs(ctx, connStr, ReplicationSlot)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		return 0, err
	}
	if sys.SystemID == "0" {
		// It has not streamed from a compute of the timeline yet.
		return 0, errors.New("the safekeeper has no WAL of the timeline yet")
	}
	if want := strconv.FormatUint(r.sysID, 10); sys.SystemID != want {
		return 0, fmt.Errorf("its database system identifier is %s, timeline %s's is %s: %w", sys.SystemID, r.tl.ID(), want, ErrSystemMismatch)
	}
	return sys.XLogPos, nil
}

// streamSafekeepers streams from the safekeeper of set with the highest
// commit LSN until the connection ends, ctx ends, the source changes, or
// the safekeeper lags (errSafekeeperLags).
func (r *WalReceiver) streamSafekeepers(ctx context.Context, set *SafekeeperSet, changed <-chan struct{}) (streamed bool, err error) {
	probes := r.probeSafekeepers(ctx, set, set.Addrs)
	best := -1
	var failed []string
	for i, p := range probes {
		switch {
		case p.err != nil:
			failed = append(failed, p.addr+": "+p.err.Error())
		case best < 0 || p.commit > probes[best].commit:
			best = i
		}
	}
	if best < 0 {
		return false, fmt.Errorf("no safekeeper serves timeline %s: %s", r.tl.ID(), strings.Join(failed, "; "))
	}
	addr := probes[best].addr
	r.log.Info().Str("safekeeper", addr).Stringer("commit_lsn", probes[best].commit).Msg("streaming from the safekeeper with the highest commit LSN")

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		r.watchSafekeepers(sctx, set, addr, cancel)
	}()
	r.toSafekeeper, r.gen = true, r.tl.Generation()
	r.setStatus(func(st *WalReceiverStatus) { st.Safekeeper = addr })
	streamed, err = r.stream(sctx, ctx, set.connString(addr, r.tl.ID(), r.gen, r.client), changed)
	cause := context.Cause(sctx)
	cancel(nil)
	<-watched
	r.setStatus(func(st *WalReceiverStatus) { st.Safekeeper = "" })
	if ctx.Err() == nil && errors.Is(cause, errSafekeeperLags) {
		return streamed, cause
	}
	if err != nil {
		err = fmt.Errorf("safekeeper %s: %w", addr, err)
	}
	return streamed, err
}

// watchSafekeepers ends the stream from current (through cancel, with
// errSafekeeperLags) when no WAL has come for switchIdle while another
// safekeeper of set reports a commit LSN above the WAL we have. It
// returns when ctx ends.
func (r *WalReceiver) watchSafekeepers(ctx context.Context, set *SafekeeperSet, current string, cancel context.CancelCauseFunc) {
	others := slices.DeleteFunc(slices.Clone(set.Addrs), func(a string) bool { return a == current })
	if len(others) == 0 {
		return
	}
	ticker := time.NewTicker(r.probeInterval)
	defer ticker.Stop()
	end, since := r.store.End(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if e := r.store.End(); e != end {
			end, since = e, time.Now()
			continue
		}
		if time.Since(since) < r.switchIdle {
			continue
		}
		for _, p := range r.probeSafekeepers(ctx, set, others) {
			if p.err == nil && p.commit > end {
				cancel(fmt.Errorf("%w: nothing from %s for %v at %v, %s is at %v",
					errSafekeeperLags, current, time.Since(since).Round(time.Second), end, p.addr, p.commit))
				return
			}
		}
		// Ask again only after another idle period.
		since = time.Now()
	}
}
