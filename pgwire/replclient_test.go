package pgwire

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestReplicationClientAsSynchronousStandby connects to a real PostgreSQL
// 15 as its only synchronous standby and checks what the page server and
// safekeepers rely on: WAL arrives from the requested LSN, and a commit is
// acknowledged only after we report its LSN as flushed.
func TestReplicationClientAsSynchronousStandby(t *testing.T) {
	pg := pgtest.Start(t, map[string]string{
		"synchronous_standby_names": "zenith_test",
		"synchronous_commit":        "on",
		"wal_level":                 "replica",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	repl, err := ConnectReplication(ctx, pg.ConnString("postgres")+" application_name=zenith_test")
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	sys, err := repl.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sys.Timeline != 1 || sys.XLogPos == 0 || sys.SystemID == "" {
		t.Fatalf("IDENTIFY_SYSTEM: got %+v", sys)
	}
	if err := repl.CreatePhysicalSlot(ctx, "zenith_test_slot"); err != nil {
		t.Fatal(err)
	}
	if err := repl.CreatePhysicalSlot(ctx, "zenith_test_slot"); err != nil {
		t.Fatalf("creating an existing slot again: %v", err)
	}
	if err := repl.CreatePhysicalSlot(ctx, "Bad Name"); err == nil {
		t.Fatal("a slot name with spaces was accepted")
	}
	if err := repl.StartReplication(ctx, "zenith_test_slot", sys.XLogPos, sys.Timeline); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	committed := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
		committed <- err
	}()

	// The WAL arrives before anything is read: Pending says so.
	for deadline := time.Now().Add(30 * time.Second); !repl.Pending(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Pending still false 30 s after the compute wrote WAL")
		}
	}

	// Receive WAL until the commit's LSN has surely arrived: read until
	// the stream is idle for a moment, checking contiguity on the way.
	next := sys.XLogPos
	var received pgdata.LSN
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		msg, err := repl.Receive(rctx)
		rcancel()
		if errors.Is(err, context.DeadlineExceeded) && received > sys.XLogPos {
			break
		}
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		switch m := msg.(type) {
		case *XLogData:
			if m.Start != next {
				t.Fatalf("XLogData starts at %v, want %v (contiguous)", m.Start, next)
			}
			next = m.Start + pgdata.LSN(len(m.Data))
			received = next
		case *Keepalive:
			if m.ReplyRequested {
				if err := repl.SendStatus(ctx, StandbyStatus{Written: received, Flushed: sys.XLogPos, Applied: sys.XLogPos}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if repl.Pending() {
		t.Error("Pending after the stream was read to its end")
	}
	select {
	case err := <-committed:
		t.Fatalf("commit returned (err=%v) before the standby reported it flushed", err)
	default:
	}

	if err := repl.SendStatus(ctx, StandbyStatus{Written: received, Flushed: received, Applied: received}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("commit still waiting 30 s after the standby reported the WAL flushed")
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("count: %d, %v", n, err)
	}

	// A server shutting down sends the rest of its WAL (the shutdown
	// checkpoint), waits for the standby to flush it and ends the stream:
	// Receive must say so, not report a protocol error.
	conn.Close(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- pg.Stop(ctx, pgcluster.StopFast) }()
	for {
		msg, err := repl.Receive(ctx)
		if errors.Is(err, ErrStreamEnded) {
			break
		}
		if err != nil {
			t.Fatalf("receive during shutdown: got %v, want ErrStreamEnded", err)
		}
		if m, ok := msg.(*XLogData); ok {
			received = m.Start + pgdata.LSN(len(m.Data))
		}
		if err := repl.SendStatus(ctx, StandbyStatus{Written: received, Flushed: received, Applied: received}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
}
