package control_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// prewarmLine is the FUSE server's "prewarmed" log line.
type prewarmLine struct {
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
	Done  bool   `json:"done"`
	Error string `json:"error"`
}

// waitPrewarmed waits for node name's FUSE server to log the end of its
// prewarm and returns the line.
func waitPrewarmed(t *testing.T, env *zenithtest.Env, name string) prewarmLine {
	t.Helper()
	log := filepath.Join(nodeDir(t, filepath.Join(env.RepoDir, "pgdatadirs", "tenants"), name), "fuse.log")
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var l struct {
				prewarmLine
				Message string `json:"message"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "prewarmed" {
				return l.prewarmLine
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("node %s's FUSE server logged no prewarm in 3 minutes", name)
	return prewarmLine{}
}

// TestLazyPrewarm starts lazy nodes on a branch with two tables: with
// the default budget, the FUSE server reads every relation file in the
// background once PostgreSQL is ready, so that queries then fetch
// nothing; rows the compute updates while the prewarm runs are not
// overwritten by the fetched versions (here, on the node, and on an eager
// node of the branch after); with a budget of 64 KiB it reads that much,
// from the smallest files, and none of the tables.
func TestLazyPrewarm(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Debug: the FUSE server logs every fetch.
	env := zenithtest.New(t, &zenithtest.Options{Environ: []string{"ZENITH_LOG=debug"}})
	loader := env.Postgres.CreateStart("main", "--eager")
	lc := loader.Connect()
	for _, sql := range []string{
		"CREATE TABLE small AS SELECT g AS id, repeat('s', 100) AS pad FROM generate_series(1, 5000) g",
		"CREATE TABLE big AS SELECT g AS id, 0 AS n, repeat('b', 200) AS pad FROM generate_series(1, 120000) g",
	} {
		if _, err := lc.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	lc.Close(ctx)
	loader.Stop()

	pg := env.Postgres.CreateStart("main", "--name", "warm")
	conn := pg.Connect()
	// The compute's own writes, as the prewarm begins.
	if _, err := conn.Exec(ctx, "UPDATE big SET n = 1 WHERE id % 3 = 0"); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	sizes := map[string]int{}
	for _, rel := range []string{"small", "big"} {
		var p string
		var n int
		if err := conn.QueryRow(ctx, "SELECT pg_relation_filepath($1), pg_relation_size($1) / 8192", rel).Scan(&p, &n); err != nil {
			t.Fatal(err)
		}
		files[rel], sizes[rel] = p, n
	}
	l := waitPrewarmed(t, env, "warm")
	t.Logf("prewarmed: %+v", l)
	if !l.Done || l.Error != "" || l.Bytes < int64(sizes["small"]+sizes["big"])*8192 {
		t.Fatalf("prewarm with the default budget: %+v; want it done, with both tables (%d and %d blocks) read", l, sizes["small"], sizes["big"])
	}
	small, _ := fetchesOf(t, env, "warm", files["small"], 0)
	if small.blocks != sizes["small"] {
		t.Errorf("table small (%d blocks): %d blocks fetched by the prewarm; want all", sizes["small"], small.blocks)
	}
	_, off := fetchesOf(t, env, "warm", files["big"], 0)
	var sum, updated int
	if err := conn.QueryRow(ctx, "SELECT sum(id) FROM small").Scan(&sum); err != nil || sum != 5000*5001/2 {
		t.Fatalf("sum(id) of small: %d, %v", sum, err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FILTER (WHERE n = 1) FROM big").Scan(&updated); err != nil || updated != 40000 {
		t.Fatalf("rows of big updated before the prewarm ended: %d, %v; want 40000", updated, err)
	}
	if after, _ := fetchesOf(t, env, "warm", files["big"], off); after.fetches > 0 {
		t.Errorf("a scan of big after the prewarm fetched %d blocks in %d fetches; want none", after.blocks, after.fetches)
	}
	pg.Stop()
	check := env.Postgres.CreateStart("main", "--name", "check", "--eager")
	if err := check.Connect().QueryRow(ctx, "SELECT count(*) FILTER (WHERE n = 1) FROM big").Scan(&updated); err != nil || updated != 40000 {
		t.Fatalf("rows of big updated, on an eager node after: %d, %v; want 40000", updated, err)
	}
	check.Stop()

	env.Zenith("pg", "create", "main", "--name", "budget")
	setNodeSetting(t, env, "budget", "lazy_prewarm_bytes", "65536")
	env.Postgres.CreateStart("main", "--name", "budget")
	l = waitPrewarmed(t, env, "budget")
	t.Logf("prewarmed with a budget of 64 KiB: %+v", l)
	if !l.Done || l.Bytes != 65536 {
		t.Errorf("prewarm with a budget of 65536 bytes: %+v; want it done, with 65536 bytes read", l)
	}
	for rel, path := range files {
		if f, _ := fetchesOf(t, env, "budget", path, 0); f.fetches > 0 {
			t.Errorf("prewarm with a budget of 64 KiB fetched %d blocks of %s", f.blocks, rel)
		}
	}
}
