package safekeeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Catching up from the peers.
//
// A safekeeper that missed an election (it was down, partitioned, or lost
// its directory while a compute started) is in an older term, or has no
// timeline at all, and the compute of the new term does not know it. The
// control plane's election brought the voters in; this one would wait for
// the next election, and the set would tolerate one failure fewer until
// then. Instead, when the peer poller sees a peer that has joined a newer
// term and streams from that term's compute, this safekeeper does what the
// election's "elected" step would have done with it as a voter, with that
// peer as the donor:
//
//  1. it records the newer term (as a vote would: from then on it refuses
//     WAL and computes of older terms; it grants no vote to anyone);
//  2. it truncates what diverges from the donor's history and pulls the
//     WAL it lacks up to the term's start from the donor, then records
//     (term, start) in its history (prepareElected, finishElected);
//  3. it pulls the donor's WAL above the start too, up to the donor's
//     flush LSN: the same compute's bytes, so streaming from the compute
//     may resume there, and the compute need not still have them;
//  4. it streams from the term's compute, which counts it towards the
//     quorum (synchronous_standby_names) from its first reply on.
//
// It is safe for the reason the election is: the donor's history ends
// with the elected (term, start), and the WAL below start that every
// member of the term holds is the donor's. A new election during the
// catch-up moves the term on, which every step checks (ErrTermChanged).
//
// The WAL is pulled over the peers' HTTP API (Config.Peers are HTTP
// addresses), with the token and CA the poller uses:
//
//	GET /v1/timeline/<tenant>/<timeline>/compute  {"term": N, "compute": "connstr"}
//	GET /v1/timeline/<tenant>/<timeline>/wal?start=LSN&end=LSN  the raw WAL bytes

// catchUpTimeout bounds one catch-up of a timeline.
const catchUpTimeout = 10 * time.Minute

// ComputeInfo is a timeline's compute as GET .../compute reports it.
type ComputeInfo struct {
	Term    uint64 `json:"term"`
	Compute string `json:"compute"`
}

// computeInfo returns the compute this timeline streams from and its term.
func (tl *Timeline) computeInfo() ComputeInfo {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return ComputeInfo{Term: tl.ctl.ComputeTerm, Compute: tl.ctl.Compute}
}

// catchUpDonor returns, of the peers' states of the timeline k, the one to
// catch up from: in a newer term than own (nil: no timeline here), joined
// to it (its history ends with that term) and streaming from its compute,
// the most advanced of those. ok is false if there is nothing to catch up.
func catchUpDonor(own *TimelineState, k timelineKey, peers [][]TimelineState) (donor TimelineState, peer int, ok bool) {
	for i, sts := range peers {
		for _, p := range sts {
			if p.Tenant != k.tenant || p.Timeline != k.timeline {
				continue
			}
			if len(p.History) == 0 || p.History.LastTerm() != p.Term || p.ComputeTerm != p.Term {
				continue
			}
			if own != nil && (own.Term > p.Term || (own.Term == p.Term && own.History.LastTerm() == p.Term)) {
				continue // here already, or newer
			}
			if !ok || p.Term > donor.Term || (p.Term == donor.Term && p.FlushLSN > donor.FlushLSN) {
				donor, peer, ok = p, i, true
			}
		}
	}
	return donor, peer, ok
}

// catchUp starts a catch-up of every timeline that a peer has in a newer
// term, one at a time per timeline.
func (s *Safekeeper) catchUp(ctx context.Context, client *http.Client, peers [][]TimelineState) {
	own := map[timelineKey]*TimelineState{}
	for _, tl := range s.Timelines() {
		st := tl.State()
		own[timelineKey{st.Tenant, st.Timeline}] = &st
	}
	// WAL pulls take as long as they take: ctx bounds them, not the
	// poller's per-request timeout.
	pull := *client
	pull.Timeout = 0
	seen := map[timelineKey]bool{}
	for _, sts := range peers {
		for _, p := range sts {
			k := timelineKey{p.Tenant, p.Timeline}
			if seen[k] {
				continue
			}
			seen[k] = true
			donor, i, ok := catchUpDonor(own[k], k, peers)
			if !ok || !s.startCatchUp(k) {
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.endCatchUp(k)
				cctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
				defer cancel()
				log := s.log.With().Str("tenant", k.tenant.String()).Str("timeline", k.timeline.String()).
					Str("donor", s.cfg.Peers[i]).Uint64("term", donor.Term).Logger()
				log.Info().Msg("a peer is in a newer term: catching up from it")
				if err := s.catchUpFrom(cctx, &pull, k, donor, s.cfg.Peers[i]); err != nil {
					log.Warn().Err(err).Msg("catching up from the peer failed; trying again at the next poll")
					return
				}
				log.Info().Msg("caught up; streaming from the compute of the term")
			}()
		}
	}
}

// startCatchUp marks timeline k as catching up; false if it already is.
func (s *Safekeeper) startCatchUp(k timelineKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.catchingUp == nil {
		s.catchingUp = map[timelineKey]bool{}
	}
	if s.catchingUp[k] || s.deleted[k] || s.runCtx == nil { // a deleted one: see ErrTimelineDeleted
		return false
	}
	s.catchingUp[k] = true
	return true
}

func (s *Safekeeper) endCatchUp(k timelineKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.catchingUp, k)
}

// catchUpFrom brings timeline k into the donor's term (steps 1 to 4
// above); addr is the donor's HTTP address.
func (s *Safekeeper) catchUpFrom(ctx context.Context, client *http.Client, k timelineKey, donor TimelineState, addr string) error {
	p := peerHTTP{client: client, opts: s.cfg.Client, addr: addr, k: k}
	ci, err := p.compute(ctx)
	if err != nil {
		return err
	}
	if ci.Term != donor.Term || ci.Compute == "" {
		return fmt.Errorf("the donor's compute is of term %d, not of its term %d", ci.Term, donor.Term)
	}
	tl, err := s.Timeline(k.tenant, k.timeline, true)
	if err != nil {
		return err
	}
	term := donor.Term
	if tl.State().Term < term {
		if _, _, err := tl.Vote(term); err != nil {
			return err
		}
	}
	// The donor's history before the term, as the election's winner
	// had it: joining appends (term, start) to it.
	last := len(donor.History) - 1
	start, before := donor.History[last].Start, donor.History[:last]
	from, err := tl.prepareElected(term, start, before, donor.BeginLSN)
	if err != nil {
		return err
	}
	if from < start {
		if err := p.pull(ctx, tl, term, from, start); err != nil {
			return err
		}
	}
	if err := tl.finishElected(term, start, before); err != nil {
		return err
	}
	// The donor may have moved on since its state was polled; what it
	// has flushed now is at least that.
	if donor.FlushLSN > start {
		if err := p.pull(ctx, tl, term, start, donor.FlushLSN); err != nil {
			return err
		}
		if _, err := tl.Sync(); err != nil {
			return err
		}
	}
	if err := tl.setCompute(term, start, ci.Compute); err != nil {
		return err
	}
	s.startStreaming(tl)
	return nil
}

// peerHTTP is a peer's HTTP API for one timeline.
type peerHTTP struct {
	client *http.Client
	opts   auth.ClientOptions
	addr   string
	k      timelineKey
}

func (p peerHTTP) get(ctx context.Context, what string, q url.Values) (*http.Response, error) {
	scheme := "http://"
	if p.opts.CAFile != "" {
		scheme = "https://"
	}
	u := scheme + p.addr + "/v1/timeline/" + p.k.tenant.String() + "/" + p.k.timeline.String() + "/" + what
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	auth.SetBearer(req, p.opts.Token)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return resp, nil
}

// compute asks the peer for the timeline's compute.
func (p peerHTTP) compute(ctx context.Context) (ComputeInfo, error) {
	resp, err := p.get(ctx, "compute", nil)
	if err != nil {
		return ComputeInfo{}, err
	}
	defer resp.Body.Close()
	var ci ComputeInfo
	if err := json.NewDecoder(resp.Body).Decode(&ci); err != nil {
		return ComputeInfo{}, fmt.Errorf("compute of %s: %w", p.addr, err)
	}
	return ci, nil
}

// pull copies the peer's WAL [from, to) into tl, as WAL of term.
func (p peerHTTP) pull(ctx context.Context, tl *Timeline, term uint64, from, to pgdata.LSN) error {
	resp, err := p.get(ctx, "wal", url.Values{"start": {from.String()}, "end": {to.String()}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w := &recoveryWriter{tl: tl, term: term, pos: from}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("pull WAL [%s, %s) from %s: %w", from, to, p.addr, err)
	}
	if w.pos != to {
		return fmt.Errorf("pull WAL [%s, %s) from %s: got WAL up to %s", from, to, p.addr, w.pos)
	}
	return nil
}

// recoveryRoutes registers what a peer catching up asks for; both need an
// admin token when auth is on (peers present one).
func (s *Safekeeper) recoveryRoutes(mux *auth.Mux) {
	timeline := func(w http.ResponseWriter, r *http.Request) *Timeline {
		tenant, timeline, ok := pathTimeline(w, r)
		if !ok {
			return nil
		}
		tl, err := s.Timeline(tenant, timeline, false)
		if err != nil || tl == nil {
			auth.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such timeline on this safekeeper"})
			return nil
		}
		return tl
	}
	mux.HandleFunc("GET /v1/timeline/{tenant}/{timeline}/compute", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		if tl := timeline(w, r); tl != nil {
			auth.WriteJSON(w, http.StatusOK, tl.computeInfo())
		}
	})
	mux.HandleFunc("GET /v1/timeline/{tenant}/{timeline}/wal", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		tl := timeline(w, r)
		if tl == nil {
			return
		}
		start, err1 := pgdata.ParseLSN(r.URL.Query().Get("start"))
		end, err2 := pgdata.ParseLSN(r.URL.Query().Get("end"))
		if err := errors.Join(err1, err2); err != nil || end < start {
			auth.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("want start <= end LSNs: %v", err)})
			return
		}
		if flush := tl.FlushLSN(); end > flush {
			auth.WriteJSON(w, http.StatusConflict, map[string]string{"error": fmt.Sprintf("%s is beyond the flush LSN %s", end, flush)})
			return
		}
		if begin := tl.State().BeginLSN; start < begin {
			auth.WriteJSON(w, http.StatusConflict, map[string]string{"error": fmt.Sprintf("%s is below the stored WAL, which begins at %s", start, begin)})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatUint(uint64(end-start), 10))
		buf := make([]byte, 128<<10)
		for pos := start; pos < end; {
			n := min(pgdata.LSN(len(buf)), end-pos)
			if err := tl.ReadWAL(buf[:n], pos); err != nil {
				s.log.Warn().Err(err).Msg("serve WAL to a peer")
				return // the short body tells the peer
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			pos += n
		}
	})
}
