package safekeeper

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/zenithdb/zenith/repo/auth"
)

// The peers' status, sent on change. Each safekeeper keeps one
// GET /v1/status/stream open to each peer; the peer writes the state of
// all its timelines (as GET /v1/status, one JSON line) when it differs
// from what it last wrote, looking at most every PollInterval, and at
// least every statusHeartbeat. Under load that is about as many messages
// as polling /v1/status every PollInterval, but each is one write on one
// side and one read on the other, with no request; an idle set of
// safekeepers sends a heartbeat a second. A peer that sends nothing for
// statusHeartbeat+peerTimeout counts as unreachable (nil), as one that
// does not answer a poll did; its stream is opened again. A peer without
// the stream (an older build: 404) is polled as before.

// statusHeartbeat is how often a status stream repeats an unchanged
// status, so the reader knows the peer is there.
const statusHeartbeat = time.Second

// errNoStatusStream is a peer that does not serve /v1/status/stream.
var errNoStatusStream = errors.New("the peer has no status stream")

// sortedStates returns the state of every timeline, ordered by tenant
// and timeline, so that two snapshots of the same state are equal.
func (s *Safekeeper) sortedStates() []TimelineState {
	tls := s.Timelines()
	out := make([]TimelineState, 0, len(tls))
	for _, tl := range tls {
		out = append(out, tl.State())
	}
	slices.SortFunc(out, func(a, b TimelineState) int {
		if c := cmp.Compare(a.Tenant.String(), b.Tenant.String()); c != 0 {
			return c
		}
		return cmp.Compare(a.Timeline.String(), b.Timeline.String())
	})
	return out
}

// sameStates says whether a and b report the same, field by field of
// what the JSON carries.
func sameStates(a, b []TimelineState) bool {
	return slices.EqualFunc(a, b, func(x, y TimelineState) bool {
		return x.Tenant == y.Tenant && x.Timeline == y.Timeline && x.Term == y.Term &&
			slices.Equal(x.History, y.History) && x.BeginLSN == y.BeginLSN &&
			x.FlushLSN == y.FlushLSN && x.CommitLSN == y.CommitLSN &&
			x.PageserverLSN == y.PageserverLSN && x.PageserverGeneration == y.PageserverGeneration &&
			x.ComputeTerm == y.ComputeTerm && x.SystemID == y.SystemID
	})
}

// serveStatusStream writes the status of every timeline as one JSON line
// whenever it changed, looking every PollInterval, and at least every
// statusHeartbeat, until the client goes or the HTTP server shuts down
// (stop is closed).
func (s *Safekeeper) serveStatusStream(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	var last []TimelineState
	var sent time.Time
	for {
		st := s.sortedStates()
		if now := time.Now(); sent.IsZero() || !sameStates(st, last) || now.Sub(sent) >= statusHeartbeat {
			if err := enc.Encode(st); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			last, sent = st, now
		}
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-stop:
			return
		}
	}
}

// peerView holds the latest status of each peer: nil for one that is
// unreachable (or not heard from yet).
type peerView struct {
	mu     sync.Mutex
	states [][]TimelineState
}

func (v *peerView) set(i int, st []TimelineState) {
	v.mu.Lock()
	v.states[i] = st
	v.mu.Unlock()
}

// snapshot returns every peer's latest status.
func (v *peerView) snapshot() [][]TimelineState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.states)
}

// watchPeer keeps view's entry i up to date with the status of the peer
// at addr, from its status stream, or by polling it every PollInterval if
// it has none, until ctx ends.
func (s *Safekeeper) watchPeer(ctx context.Context, client *http.Client, view *peerView, i int, addr string) {
	for ctx.Err() == nil {
		err := s.readStatusStream(ctx, client, addr, func(st []TimelineState) { view.set(i, st) })
		view.set(i, nil)
		if errors.Is(err, errNoStatusStream) {
			s.log.Info().Str("peer", addr).Msg("the peer has no status stream: polling its status")
			s.pollPeer(ctx, client, view, i, addr)
			return
		}
		if ctx.Err() == nil {
			s.log.Debug().Err(err).Str("peer", addr).Msg("peer status stream")
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.PollInterval):
		}
	}
}

// readStatusStream reads the status stream of the peer at addr, passing
// each status to got, until it fails, sends nothing for
// statusHeartbeat+peerTimeout, or ctx ends.
func (s *Safekeeper) readStatusStream(ctx context.Context, client *http.Client, addr string, got func([]TimelineState)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silent := fmt.Errorf("status stream of %s: silent for %v", addr, statusHeartbeat+peerTimeout)
	alive := time.AfterFunc(statusHeartbeat+peerTimeout, func() { cancel(silent) })
	defer alive.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.peerURL(addr, "/v1/status/stream"), nil)
	if err != nil {
		return err
	}
	auth.SetBearer(req, s.cfg.Client.Token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errNoStatusStream
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status stream of %s: %s", addr, resp.Status)
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var st []TimelineState
		if err := dec.Decode(&st); err != nil {
			if c := context.Cause(ctx); c != nil {
				return c
			}
			return fmt.Errorf("status stream of %s: %w", addr, err)
		}
		alive.Reset(statusHeartbeat + peerTimeout)
		got(st)
	}
}

// pollPeer polls the status of the peer at addr into view's entry i every
// PollInterval, until ctx ends.
func (s *Safekeeper) pollPeer(ctx context.Context, client *http.Client, view *peerView, i int, addr string) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		pctx, done := context.WithTimeout(ctx, peerTimeout)
		st, err := fetchStatus(pctx, client, s.cfg.Client, addr)
		done()
		if err != nil {
			s.log.Debug().Err(err).Str("peer", addr).Msg("peer status")
		}
		view.set(i, st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// peerURL is the URL of path on the peer at addr.
func (s *Safekeeper) peerURL(addr, path string) string {
	if s.cfg.Client.CAFile != "" {
		return "https://" + addr + path
	}
	return "http://" + addr + path
}
