package control_test

import (
	"context"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// TestLazyStartSwitchesMode restarts one node lazy, eager, then lazy
// again: each start rebuilds its data directory in the other mode, and
// waits for PostgreSQL's readiness where that mode keeps postmaster.pid
// (a lazy node's backing directory, past the FUSE server; an eager
// node's data directory), so each must come up and answer.
func TestLazyStartSwitchesMode(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)
	for i, mode := range []string{"lazy", "eager", "lazy"} {
		args := []string{"--name", "n"}
		if mode == "eager" {
			args = append(args, "--eager")
		}
		pg := env.Postgres.CreateStart("main", args...)
		if n := listNode(t, env, "n"); n.Mode != mode || n.Status != "running" {
			t.Fatalf("start %d: a %s node, %s; want %s, running", i+1, n.Mode, n.Status, mode)
		}
		conn := pg.Connect()
		var got int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_class").Scan(&got); err != nil || got == 0 {
			t.Fatalf("start %d (%s): count of pg_class: %d, %v", i+1, mode, got, err)
		}
		conn.Close(ctx)
		pg.Stop()
	}
}
