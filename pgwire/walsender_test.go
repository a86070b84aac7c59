package pgwire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestWALCutsCheck: a walsender goes on after cuts of its WAL above what
// it sent, and ends its stream after one below, or after several (only
// the last one's position is known).
func TestWALCutsCheck(t *testing.T) {
	const sent = pgdata.LSN(1000)
	for _, tc := range []struct {
		name     string
		cuts     WALCuts
		wantSeen uint64
		wantErr  bool
	}{
		{"no cut", WALCuts{Count: 3}, 3, false},
		{"one cut above what was sent", WALCuts{Count: 4, Last: sent + 1}, 4, false},
		{"one cut at the end of what was sent", WALCuts{Count: 4, Last: sent}, 4, false},
		{"one cut below what was sent", WALCuts{Count: 4, Last: sent - 1}, 0, true},
		{"two cuts, the last above what was sent", WALCuts{Count: 5, Last: sent + 1}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen, err := tc.cuts.Check(sent, 3)
			if seen != tc.wantSeen || (err != nil) != tc.wantErr || err != nil && !errors.Is(err, ErrWALTruncated) {
				t.Errorf("%+v.Check(%s, 3) = %d, %v; want %d, error %v", tc.cuts, sent, seen, err, tc.wantSeen, tc.wantErr)
			}
		})
	}
}

// memWAL is WAL in memory from base on, of which the first end bytes may
// be sent; grow makes more of it sendable.
type memWAL struct {
	base    pgdata.LSN
	data    []byte
	mu      sync.Mutex
	end     pgdata.LSN
	changed chan struct{}
}

func (m *memWAL) Servable(pgdata.LSN) (pgdata.LSN, <-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.end, m.changed, nil
}

func (m *memWAL) ReadWAL(b []byte, lsn pgdata.LSN) (bool, error) {
	copy(b, m.data[lsn-m.base:])
	return true, nil
}

func (m *memWAL) grow(end pgdata.LSN) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.end = end
	close(m.changed)
	m.changed = make(chan struct{})
}

// startWALSender runs a server whose START_REPLICATION streams src with
// opt, and returns a replication client streaming from start.
func startWALSender(t *testing.T, ctx context.Context, src WALSource, opt WALSendOptions, start pgdata.LSN) *ReplicationConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := HandlerFunc(func(ctx context.Context, s *Session, cmd string, _ []string) error {
		word, rest, _ := strings.Cut(cmd, " ")
		if word != "START_REPLICATION" {
			return Errorf(CodeSyntaxError, "only START_REPLICATION")
		}
		sr, err := ParseStartReplication(rest, 1)
		if err != nil {
			return err
		}
		cb, err := s.CopyBoth()
		if err != nil {
			return err
		}
		return SendWAL(ctx, cb, src, sr.Start, opt)
	})
	srv := NewServer(Config{}, h, zerolog.New(zerolog.NewTestWriter(t)))
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	repl, err := ConnectReplication(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=replica sslmode=disable", ln.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repl.Close(context.Background()) })
	if err := repl.StartReplication(ctx, "", start, 1); err != nil {
		t.Fatal(err)
	}
	return repl
}

// TestSendWAL: a walsender sends the WAL from the start asked for up to
// what its source says may be sent, follows the source as it grows,
// passes status updates on and answers one that asks for a reply with a
// keepalive at once (here the idle keepalive would come after an hour).
func TestSendWAL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const base = pgdata.LSN(0x1000000)
	src := &memWAL{base: base, data: make([]byte, 3*maxXLogData), end: base + maxXLogData + 100, changed: make(chan struct{})}
	for i := range src.data {
		src.data[i] = byte(i * 7)
	}
	statuses := make(chan StandbyStatus, 10)
	repl := startWALSender(t, ctx, src, WALSendOptions{
		Keepalive: time.Hour,
		OnStatus:  func(st *StandbyStatus) { statuses <- *st },
	}, base+10)
	got := []byte{}
	receive := func(end pgdata.LSN) {
		t.Helper()
		for base+10+pgdata.LSN(len(got)) < end {
			msg, err := repl.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			x, ok := msg.(*XLogData)
			if !ok {
				continue
			}
			if want := base + 10 + pgdata.LSN(len(got)); x.Start != want || x.Start+pgdata.LSN(len(x.Data)) > end {
				t.Fatalf("XLogData of [%s, +%d), want it at %s and below the end %s", x.Start, len(x.Data), want, end)
			}
			got = append(got, x.Data...)
		}
	}
	receive(src.end)
	grown := base + 2*maxXLogData + 5
	src.grow(grown)
	receive(grown)
	if !bytes.Equal(got, src.data[10:grown-base]) {
		t.Fatal("the WAL received differs from the source's")
	}

	st := StandbyStatus{Written: grown, Flushed: grown, Applied: grown - 5, ReplyRequested: true}
	if err := repl.SendStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	msg, err := repl.Receive(ctx)
	if ka, ok := msg.(*Keepalive); err != nil || !ok || ka.WALEnd != grown {
		t.Fatalf("after a status update asking for a reply: %+v, %v; want a keepalive at %s", msg, err, grown)
	}
	if got := <-statuses; got.Flushed != st.Flushed || got.Applied != st.Applied {
		t.Errorf("OnStatus got %+v, want the update sent %+v", got, st)
	}
}

// TestSendWALTimeout: a client that sends nothing is asked for a reply
// once half the timeout passed, and after the timeout its stream ends and
// its connection is closed (such a client may be gone without a word).
func TestSendWALTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := &memWAL{base: 0x1000000, end: 0x1000000, changed: make(chan struct{})}
	repl := startWALSender(t, ctx, src, WALSendOptions{Keepalive: 20 * time.Millisecond, Timeout: 300 * time.Millisecond}, 0x1000000)
	asked := false
	for {
		msg, err := repl.Receive(ctx)
		if err != nil {
			if !asked {
				t.Errorf("the stream ended (%v) without a keepalive asking for a reply", err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			if _, err := repl.Receive(rctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("after the stream of a silent client ended: %v, want its connection closed", err)
			}
			return
		}
		if ka, ok := msg.(*Keepalive); ok && ka.ReplyRequested {
			asked = true
		}
	}
}
