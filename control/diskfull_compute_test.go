package control_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// TestComputeDiskFull fills a compute node's own directory (the node
// directories on a tmpfs of their own) while a client records its
// acknowledged commits and another writes large WAL records: PostgreSQL
// PANICs when it cannot write its WAL. zenith pg list must then show the
// node crashed and say why; once space is freed, zenith pg start must
// bring it back (rebuilt from the page server) with every acknowledged
// commit.
func TestComputeDiskFull(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{NoStart: true})
	nodesDir := filepath.Join(env.RepoDir, "pgdatadirs")
	if err := os.MkdirAll(nodesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, nodesDir, 192, func() { _, _, _ = env.Run("stop", "--immediate") })
	env.Zenith("start")
	pg := env.Postgres.CreateStart("main")
	w := startAckedWorkloadOn(t, pg)
	stopBig := bigRecords(t, pg.ConnString+"?sslmode=disable")

	ballast := fillDisk(t, nodesDir)
	t.Logf("filled %s; %d commits acknowledged", nodesDir, w.count())
	var list string
	waitFor(t, "zenith pg list to show the compute crashed", 3*time.Minute, func() bool {
		list = env.Zenith("pg", "list")
		return !strings.Contains(list, "running")
	})
	stopBig()
	acked := w.finish(t)
	t.Logf("zenith pg list with the compute's disk full:\n%s", list)
	t.Logf("%d commits acknowledged; %d failed (last: %v)", len(acked), w.errors, w.last)
	if !strings.Contains(list, "crashed") {
		t.Errorf("zenith pg list does not say the compute crashed")
	}
	if !strings.Contains(list, "No space left on device") && !strings.Contains(list, "full") {
		t.Errorf("zenith pg list does not say the compute's disk is full")
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	env.Zenith("pg", "start", "main")
	if out := env.Zenith("pg", "list"); !strings.Contains(out, "running") {
		t.Errorf("zenith pg start after space was freed: the compute does not run:\n%s", out)
	}
	conn := pg.Connect()
	checkAcked(t, conn, acked)
	exec1(t, conn, "INSERT INTO acked VALUES (-1)")
}
