package control_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// fetchLog is what the FUSE server's debug log says it fetched of one
// file: how many fetches (pipelined batches), how many blocks in all,
// and the largest batch.
type fetchLog struct{ fetches, blocks, largest int }

// fetchesOf reads the "fetched" lines (ZENITH_LOG=debug) of file path
// (as the manifest names it, e.g. base/5/16384) in the FUSE server's log
// of node name, from byte offset on; it also returns the log's size.
func fetchesOf(t *testing.T, env *zenithtest.Env, name, path string, offset int64) (fetchLog, int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodeDir(t, filepath.Join(env.RepoDir, "pgdatadirs", "tenants"), name), "fuse.log"))
	if err != nil {
		t.Fatal(err)
	}
	var l fetchLog
	sc := bufio.NewScanner(bytes.NewReader(b[offset:]))
	for sc.Scan() {
		var line struct {
			Message string `json:"message"`
			File    string `json:"file"`
			Blocks  int    `json:"blocks"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Message != "fetched" || line.File != path {
			continue
		}
		l.fetches++
		l.blocks += line.Blocks
		l.largest = max(l.largest, line.Blocks)
	}
	return l, int64(len(b))
}

// TestLazySparseReads reads every eighth block of a table in ascending
// order on a lazy node (a TID scan; an index scan's heap fetches in heap
// order are the same to the FUSE server): it fetches about the blocks
// read, not the whole table, though each read starts near where the one
// before ended. A sequential scan of a fresh table still reads ahead (a
// fetch bigger than the kernel's largest read), and so does a sequential
// scan of the sparsely read table afterwards (few fetches per block,
// though the kernel asks for the blocks between the cached ones seven at
// a time).
func TestLazySparseReads(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Debug: the FUSE server logs every fetch.
	env := zenithtest.New(t, &zenithtest.Options{Environ: []string{"ZENITH_LOG=debug"}})
	const blocks = 4096
	const step = 8
	loader := env.Postgres.CreateStart("main", "--eager")
	lc := loader.Connect()
	for _, sql := range []string{
		// 1,000-byte rows (stored inline, uncompressed): 7 a block.
		fmt.Sprintf("CREATE TABLE sparse AS SELECT g AS id, repeat('s', 1000) AS pad FROM generate_series(1, %d) g", blocks*7),
		"CREATE TABLE dense AS SELECT * FROM sparse",
		"VACUUM ANALYZE sparse, dense",
	} {
		if _, err := lc.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var n int
	if err := lc.QueryRow(ctx, "SELECT pg_relation_size('sparse') / 8192").Scan(&n); err != nil || n != blocks {
		t.Fatalf("table sparse has %d blocks (%v), want %d", n, err, blocks)
	}
	lc.Close(ctx)
	loader.Stop()

	pg := createLazyCold(t, env, "lazy", "-c", "autovacuum=off")
	conn := pg.Connect()
	files := map[string]string{}
	for _, rel := range []string{"sparse", "dense"} {
		var p string
		if err := conn.QueryRow(ctx, "SELECT pg_relation_filepath($1)", rel).Scan(&p); err != nil {
			t.Fatal(err)
		}
		files[rel] = p
	}

	// A fresh table, scanned: the FUSE server reads ahead of the
	// kernel's reads (of up to 128 blocks).
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM dense").Scan(&n); err != nil || n != blocks*7 {
		t.Fatalf("count(*) of dense: %d, %v", n, err)
	}
	d, _ := fetchesOf(t, env, "lazy", files["dense"], 0)
	t.Logf("sequential scan of %d blocks: %d fetches, %d blocks, the largest %d", blocks, d.fetches, d.blocks, d.largest)
	if d.largest <= 128 || d.fetches > blocks/32 {
		t.Errorf("a sequential scan of %d blocks made %d fetches, the largest of %d blocks: no read-ahead", blocks, d.fetches, d.largest)
	}

	// Every eighth block, in order.
	var tids []string
	for b := 0; b < blocks; b += step {
		tids = append(tids, fmt.Sprintf(`"(%d,1)"`, b))
	}
	_, off := fetchesOf(t, env, "lazy", files["sparse"], 0)
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM sparse WHERE ctid = ANY ($1::text::tid[])",
		"{"+strings.Join(tids, ",")+"}").Scan(&n); err != nil || n != len(tids) {
		t.Fatalf("TID scan of every %dth block of sparse: %d rows, %v; want %d", step, n, err, len(tids))
	}
	s, off := fetchesOf(t, env, "lazy", files["sparse"], off)
	t.Logf("%d blocks read, one in %d: %d fetches, %d blocks fetched", len(tids), step, s.fetches, s.blocks)
	if s.blocks > 2*len(tids) {
		t.Errorf("reading %d blocks of %d, one in %d in ascending order, fetched %d blocks: read-ahead of a sparse run", len(tids), blocks, step, s.blocks)
	}

	// Then all of it: dense again.
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM sparse").Scan(&n); err != nil || n != blocks*7 {
		t.Fatalf("count(*) of sparse: %d, %v", n, err)
	}
	r, _ := fetchesOf(t, env, "lazy", files["sparse"], off)
	t.Logf("sequential scan after: %d fetches, %d blocks", r.fetches, r.blocks)
	if r.fetches > blocks/32 {
		t.Errorf("a sequential scan of a table of %d blocks, one in %d fetched before, made %d fetches (of %d blocks): no read-ahead after a sparse run", blocks, step, r.fetches, r.blocks)
	}
	conn.Close(ctx)
	pg.Stop()
}
