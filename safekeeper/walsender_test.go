package safekeeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// startReplication opens a page server's replication stream from node i
// at start.
func startReplication(t *testing.T, ctx context.Context, ts *testSet, i int, start pgdata.LSN) *pgwire.ReplicationConn {
	t.Helper()
	connStr := fmt.Sprintf("host=127.0.0.1 port=%s user=pageserver options='-c tenant_id=%s -c timeline_id=%s'",
		portOf(ts.nodes[i].pgAddr), ts.tenant, ts.timeline)
	repl, err := pgwire.ConnectReplication(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repl.Close(context.Background()) })
	if err := repl.StartReplication(ctx, "pageserver", start, 1); err != nil {
		t.Fatal(err)
	}
	return repl
}

// receiveUntil receives XLogData from start on until it reaches end,
// failing on anything out of order.
func receiveUntil(t *testing.T, ctx context.Context, repl *pgwire.ReplicationConn, start, end pgdata.LSN) []byte {
	t.Helper()
	var got []byte
	for start+pgdata.LSN(len(got)) < end {
		msg, err := repl.Receive(ctx)
		if err != nil {
			t.Fatalf("receive WAL from %s, got up to %s of %s: %v", start, start+pgdata.LSN(len(got)), end, err)
		}
		if x, ok := msg.(*pgwire.XLogData); ok {
			if want := start + pgdata.LSN(len(got)); x.Start != want {
				t.Fatalf("XLogData at %s, want %s", x.Start, want)
			}
			got = append(got, x.Data...)
		}
	}
	return got
}

// TestWalsenderEndsStreamWhenSentWALIsTruncated: the commit LSN is a byte
// position, here inside the last record of term 1 (two safekeepers hold a
// torn copy of it); the page server has been sent WAL up to there. The
// next election drops the torn record and the new term writes other WAL
// from its start: the walsender must end the stream instead of going on
// with the new term's bytes after the dropped ones, and a new stream from
// the record end serves the new history.
func TestWalsenderEndsStreamWhenSentWALIsTruncated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := makeRealWAL(t)
	last := w.ends[len(w.ends)-2]
	torn := last + 10
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		tl := openTerm1At(t, ts, i, w.from)
		end := torn
		if i == 2 {
			end = w.boundary(0.5)
		}
		appendSynced(t, tl, 1, w.from, w.slice(w.from, end))
		ts.start(i)
	}
	waitFor(t, 10*time.Second, "the commit LSN", func() bool { return ts.tl(0).State().CommitLSN == torn })
	repl := startReplication(t, ctx, ts, 0, w.from)
	if got := receiveUntil(t, ctx, repl, w.from, torn); !bytes.Equal(got, w.slice(w.from, torn)) {
		t.Fatal("received WAL differs from the compute's")
	}

	e, err := Elect(ctx, ts.addrs(), ts.tenant, ts.timeline, auth.ClientOptions{}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if e.StartLSN != last {
		t.Fatalf("election start %s, want %s (the end of the last complete record)", e.StartLSN, last)
	}
	newWAL := walBytes(last, 200)
	for i := range ts.nodes {
		appendSynced(t, ts.tl(i), e.Term, last, newWAL)
	}
	newEnd := last + pgdata.LSN(len(newWAL))
	waitFor(t, 10*time.Second, "the new term's commit LSN", func() bool { return ts.tl(0).State().CommitLSN == newEnd })

	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	for {
		msg, err := repl.Receive(rctx)
		if errors.Is(err, pgwire.ErrStreamEnded) {
			break
		}
		if err != nil {
			t.Fatalf("after the election truncated the WAL at %s below the %s sent: got %v, want the walsender to end the stream", last, torn, err)
		}
		if x, ok := msg.(*pgwire.XLogData); ok {
			t.Fatalf("after the election truncated the WAL at %s, the walsender went on at %s with the new term's WAL instead of ending the stream", last, x.Start)
		}
	}

	repl = startReplication(t, ctx, ts, 0, last)
	if got := receiveUntil(t, ctx, repl, last, newEnd); !bytes.Equal(got, newWAL) {
		t.Fatal("a new stream from the record end: received WAL differs from the new term's")
	}
}

// TestOneComputePerTerm: the safekeepers resume streaming from a compute
// at their flush LSN, a byte position; that is only sound if the compute
// is the one whose WAL they hold. A term has one compute: the same one
// again is accepted (a retried command), another one needs an election.
func TestOneComputePerTerm(t *testing.T) {
	tl := newTestTimeline(t, filepath.Join(t.TempDir(), "tl"))
	defer tl.Close()
	joinTerm(t, tl, 1)
	start := pgdata.LSN(0x1000000)
	for _, tc := range []struct {
		name    string
		term    uint64
		connStr string
		wantErr bool
	}{
		{"first compute", 1, "host=a", false},
		{"the same compute again", 1, "host=a", false},
		{"another compute in the same term", 1, "host=b", true},
	} {
		err := tl.setCompute(tc.term, start, tc.connStr)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: setCompute(%d, %s, %q) = %v, want error %v", tc.name, tc.term, start, tc.connStr, err, tc.wantErr)
		}
	}
	if _, connStr, _ := tl.computeToStream(); connStr != "host=a" {
		t.Errorf("compute to stream from: %q, want the first one", connStr)
	}
	joinTerm(t, tl, 2)
	if err := tl.setCompute(2, start, "host=b"); err != nil {
		t.Errorf("a new compute after an election: %v", err)
	}
}
