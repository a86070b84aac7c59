package pageserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestGetPagesRedoAhead reads, in one getpages request, blocks whose
// pages need redo (more of them than a request rebuilds at once in the
// background), blocks that are images and blocks past the fork's end,
// and checks that each answer, in its place, is what a getpage request
// of that block answers alone.
func TestGetPagesRedoAhead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ts, conn, tenant, c := startStreamingCompute(ctx, t)
	// About 100 pages of inserts, then updates of every tenth row after
	// a checkpoint (the first change of a page after it carries the
	// page's image), so that pages have histories of one to many
	// records.
	exec(t, c, "CREATE TABLE items (n int, pad text) WITH (fillfactor = 80)",
		"INSERT INTO items SELECT g, repeat('x', 80) FROM generate_series(1, 6000) g",
		"CHECKPOINT",
		"UPDATE items SET pad = repeat('y', 80) WHERE n % 10 = 0",
		"UPDATE items SET pad = repeat('z', 80) WHERE n % 30 = 0")
	lsn := waitIngested(t, conn, tenant, c)
	var rel pgdata.RelFileNode
	var nblocks uint32
	if err := c.QueryRow(ctx, `SELECT (SELECT dattablespace FROM pg_database WHERE datname = current_database())::bigint,
		(SELECT oid FROM pg_database WHERE datname = current_database())::bigint,
		pg_relation_filenode('items')::bigint, pg_relation_size('items') / 8192`).
		Scan(&rel.SpcNode, &rel.DbNode, &rel.RelNode, &nblocks); err != nil {
		t.Fatal(err)
	}
	if nblocks < 2*maxRedoAheadForTest {
		t.Fatalf("items has %d blocks, want at least %d", nblocks, 2*maxRedoAheadForTest)
	}

	ps := openPagestream(t, ts.pgAddr, fmt.Sprintf("pagestream %s main", tenant))
	defer ps.close(t)
	// The batch first: its pages do not go into the page cache, so
	// that the single requests after it rebuild them again.
	redos := redoCount(t, ts)
	n := nblocks + 2
	batch := ps.requestN(t, api.PageRequest{Tag: api.TagGetPagesRequest, LSN: lsn, Rel: rel, Fork: pgdata.ForkMain, Blocks: n}, int(n))
	if got := redoCount(t, ts) - redos; got <= maxRedoAheadForTest {
		t.Fatalf("the getpages request rebuilt %v pages by redo, want more than %d", got, maxRedoAheadForTest)
	}
	for blk := range n {
		one := ps.request(t, api.PageRequest{Tag: api.TagGetPageRequest, LSN: lsn, Rel: rel, Fork: pgdata.ForkMain, Block: blk})
		got := batch[blk]
		if got.Tag != one.Tag || !bytes.Equal(got.Page, one.Page) || got.SQLState != one.SQLState {
			t.Errorf("block %d: getpages answered %v %q %s, getpage %v %q %s", blk,
				got.Tag, got.SQLState, got.Message, one.Tag, one.SQLState, one.Message)
		}
		if blk >= nblocks && (got.Tag != api.TagErrorResponse || got.SQLState != "XX001") {
			t.Errorf("block %d, past the end: %+v, want an error XX001", blk, got)
		}
		if blk < nblocks && len(got.Page) != pgdata.BlockSize {
			t.Errorf("block %d: %+v, want a page", blk, got)
		}
	}
}

// maxRedoAheadForTest is pageservice's maxRedoAhead, which the test's
// batch must exceed.
const maxRedoAheadForTest = 32

// redoCount reads how many reconstructions the page server has made by
// WAL redo.
func redoCount(t *testing.T, ts *testPageServer) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ts.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := metricValue(string(body), "zenith_pageserver_redo_seconds_count")
	if !ok {
		t.Fatal("/metrics has no zenith_pageserver_redo_seconds_count")
	}
	return v
}
