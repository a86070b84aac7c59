package control_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
)

// TestLazyStartSet starts two fresh lazy computes on a branch, one
// after the other: the first records the catalog blocks its start read
// (the timeline's start set), the second fetches them ahead at its
// mount. Both dumps equal the eager compute's: a block fetched ahead is
// the page at the basebackup's LSN, as any other.
func TestLazyStartSet(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)
	tenants := filepath.Join(env.RepoDir, "pgdatadirs", "tenants")

	writer := env.Postgres.CreateStart("main", "--eager")
	conn := writer.Connect()
	for _, sql := range []string{
		// As in TestLazyCompute: pg_amcheck's NOTICE where amcheck
		// exists would be a finding.
		"ALTER ROLE postgres SET client_min_messages = warning",
		"CREATE TABLE t AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g",
		"CREATE INDEX ON t (id)",
		"CREATE VIEW v AS SELECT count(*) FROM t",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn.Close(ctx)
	live := dumpAndCheck(ctx, t, "the eager compute", writer)
	writer.Stop()

	for _, name := range []string{"first", "second"} {
		pg := env.Postgres.CreateStart("main", "--name", name)
		if d := dumpAndCheck(ctx, t, "lazy compute "+name, pg); pgdump.Compare(d, live).Err() != nil {
			t.Fatalf("lazy compute %s: %v", name, pgdump.Compare(d, live).Err())
		}
		pg.Stop()
		log, err := os.ReadFile(filepath.Join(nodeDir(t, tenants, name), "fuse.log"))
		if err != nil {
			t.Fatal(err)
		}
		ahead := regexp.MustCompile(`"blocks":(\d+),"files":(\d+),"took":[0-9.]+,[^\n]*start set fetched ahead`).FindSubmatch(log)
		switch {
		case name == "first" && ahead != nil:
			t.Fatalf("the first lazy start of the timeline fetched a start set ahead:\n%s", log)
		case name == "second" && ahead == nil:
			t.Fatalf("the second lazy start did not fetch the first's start set ahead:\n%s", log)
		case name == "second":
			t.Logf("the second start fetched %s blocks of %s files ahead", ahead[1], ahead[2])
		}
		checkStartSet(t, tenants)
	}
}

// checkStartSet checks the one start set in the repository: lines of
// a catalog file's path (file number below FirstNormalObjectId) and a
// block, at most maxStartSetBlocks of them.
func checkStartSet(t *testing.T, tenants string) {
	t.Helper()
	sets, err := filepath.Glob(filepath.Join(tenants, "*", ".lazy-start-sets", "*"))
	if err != nil || len(sets) != 1 {
		t.Fatalf("start sets: %v %v; want one", sets, err)
	}
	f, err := os.Open(sets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^(global|base/\d+)/(\d+)(_fsm|_vm)?(\.\d+)? (\d+)$`)
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("start set %s: line %q", sets[0], sc.Text())
		}
		if rel, _ := strconv.Atoi(m[2]); rel >= 16384 {
			t.Errorf("start set %s: %q is a user relation's block", sets[0], sc.Text())
		}
	}
	if n == 0 || n > maxStartSetBlocks {
		t.Errorf("start set %s has %d blocks; want 1 to %d", sets[0], n, maxStartSetBlocks)
	}
}

// maxStartSetBlocks is pg start's bound on a start set (4 MiB).
const maxStartSetBlocks = 4 << 20 / 8192
