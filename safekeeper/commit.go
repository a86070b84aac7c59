package safekeeper

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// peerTimeout bounds one poll of a peer's status.
const peerTimeout = time.Second

// pollPeers computes the commit LSN of every timeline from the peers'
// flush LSNs, and removes WAL nobody needs, until ctx ends.
func (s *Safekeeper) pollPeers(ctx context.Context) {
	client, err := peerHTTPClient(s.cfg.Client)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot poll the peers")
		<-ctx.Done()
		return
	}
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		peers := s.peerStates(ctx, client)
		for _, tl := range s.Timelines() {
			s.updateCommit(tl, peers)
		}
		s.catchUp(ctx, client, peers)
	}
}

// peerStates returns each peer's timelines, nil for a peer that did not
// answer.
func (s *Safekeeper) peerStates(ctx context.Context, client *http.Client) [][]TimelineState {
	out := make([][]TimelineState, len(s.cfg.Peers))
	var wg sync.WaitGroup
	for i, addr := range s.cfg.Peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := fetchStatus(ctx, client, s.cfg.Client, addr)
			if err != nil {
				s.log.Debug().Err(err).Str("peer", addr).Msg("peer status")
				return
			}
			out[i] = st
		}()
	}
	wg.Wait()
	return out
}

// peerHTTPClient is the HTTP client of the peers' status: over TLS,
// checked against opts' CA, when it has one.
func peerHTTPClient(opts auth.ClientOptions) (*http.Client, error) {
	if opts.CAFile == "" {
		return &http.Client{Timeout: peerTimeout}, nil
	}
	tc, err := auth.ClientTLS(opts.CAFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: peerTimeout, Transport: &http.Transport{TLSClientConfig: tc}}, nil
}

// fetchStatus gets a safekeeper's /v1/status.
func fetchStatus(ctx context.Context, client *http.Client, opts auth.ClientOptions, addr string) ([]TimelineState, error) {
	scheme := "http://"
	if opts.CAFile != "" {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	auth.SetBearer(req, opts.Token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status of %s: %s", addr, resp.Status)
	}
	var st []TimelineState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("status of %s: %w", addr, err)
	}
	return st, nil
}

// commitLSN is the q-th highest of the flush LSNs of the safekeepers
// that share own's term and history end, own included; 0 if fewer than q
// do.
func commitLSN(own TimelineState, peers []TimelineState, q int) pgdata.LSN {
	n := len(own.History)
	if n == 0 || own.History[n-1].Term != own.Term {
		return 0
	}
	last := own.History[n-1]
	flushes := []pgdata.LSN{own.FlushLSN}
	for _, p := range peers {
		if m := len(p.History); p.Term == own.Term && m > 0 && p.History[m-1] == last {
			flushes = append(flushes, p.FlushLSN)
		}
	}
	if len(flushes) < q {
		return 0
	}
	sort.Slice(flushes, func(i, j int) bool { return flushes[i] > flushes[j] })
	return flushes[q-1]
}

// updateCommit advances tl's commit LSN and the page server's LSN from the
// peers' states, and removes the WAL below what the page server and every
// peer hold.
func (s *Safekeeper) updateCommit(tl *Timeline, peers [][]TimelineState) {
	own := tl.State()
	var same []TimelineState
	horizon := own.FlushLSN
	for _, sts := range peers {
		found := false
		for _, p := range sts {
			if p.Tenant == own.Tenant && p.Timeline == own.Timeline {
				same = append(same, p)
				horizon = min(horizon, p.FlushLSN)
				found = true
			}
		}
		if !found {
			// A peer we cannot see may still need our WAL.
			horizon = 0
		}
	}
	// The page server streams from one safekeeper and reports what it
	// holds durably to that one only; the others learn it from it, or
	// they would keep all their WAL forever.
	// A peer that heard from a newer generation tells of the page server
	// that holds the tenant now.
	for _, p := range same {
		if p.PageserverGeneration > own.PageserverGeneration ||
			(p.PageserverGeneration == own.PageserverGeneration && p.PageserverLSN > own.PageserverLSN) {
			if _, err := tl.SetPageserverLSN(p.PageserverGeneration, p.PageserverLSN); err != nil {
				tl.log.Error().Err(err).Msg("record the page server's LSN")
			}
			own.PageserverGeneration, own.PageserverLSN = p.PageserverGeneration, p.PageserverLSN
		}
	}
	if c := commitLSN(own, same, s.quorum()); c > own.CommitLSN {
		if err := tl.AdvanceCommit(c); err != nil {
			tl.log.Error().Err(err).Msg("advance the commit LSN")
		}
	}
	if horizon > 0 {
		if err := tl.RemoveOldWAL(horizon); err != nil {
			tl.log.Error().Err(err).Msg("remove old WAL")
		}
	}
}
