package safekeeper

import (
	"testing"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestCatchUpDonor: a safekeeper catches up only from a peer in a newer
// term that has joined it and streams from its compute, the most advanced
// such peer, and never when it is in that term already or a newer one.
func TestCatchUpDonor(t *testing.T) {
	tenant, timeline := id.NewTenantID(), id.NewTimelineID()
	k := timelineKey{tenant, timeline}
	st := func(term uint64, h History, computeTerm uint64, flush uint64) TimelineState {
		return TimelineState{Tenant: tenant, Timeline: timeline, Term: term, History: h, ComputeTerm: computeTerm, FlushLSN: pgdata.LSN(flush)}
	}
	h1 := History{{Term: 1, Start: 0}}
	h2 := History{{Term: 1, Start: 0}, {Term: 2, Start: 0x100}}
	other := TimelineState{Tenant: id.NewTenantID(), Timeline: timeline, Term: 9, History: History{{Term: 9, Start: 0}}, ComputeTerm: 9}
	for _, c := range []struct {
		name     string
		own      *TimelineState
		peers    [][]TimelineState
		wantOK   bool
		wantPeer int
	}{
		{"missed an election", ptr(st(1, h1, 1, 0x80)), [][]TimelineState{nil, {st(2, h2, 2, 0x200)}}, true, 1},
		{"lost its directory", nil, [][]TimelineState{{st(2, h2, 2, 0x200)}, {st(2, h2, 2, 0x300)}}, true, 1},
		{"voted but not brought in", ptr(st(2, h1, 1, 0x80)), [][]TimelineState{{st(2, h2, 2, 0x200)}}, true, 0},
		{"in the term already", ptr(st(2, h2, 2, 0x180)), [][]TimelineState{{st(2, h2, 2, 0x200)}}, false, 0},
		{"in a newer term", ptr(st(3, h2, 2, 0x180)), [][]TimelineState{{st(2, h2, 2, 0x200)}}, false, 0},
		{"peer elected but without a compute yet", ptr(st(1, h1, 1, 0x80)), [][]TimelineState{{st(2, h2, 1, 0x200)}}, false, 0},
		{"peer voted but not joined", ptr(st(1, h1, 1, 0x80)), [][]TimelineState{{st(2, h1, 1, 0x200)}}, false, 0},
		{"another timeline", nil, [][]TimelineState{{other}}, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, peer, ok := catchUpDonor(c.own, k, c.peers)
			if ok != c.wantOK || (ok && peer != c.wantPeer) {
				t.Errorf("catchUpDonor = peer %d, %v; want peer %d, %v", peer, ok, c.wantPeer, c.wantOK)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
