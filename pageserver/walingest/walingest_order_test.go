package walingest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// testRecord decodes one of pgdata's saved PostgreSQL 15 records, at the
// LSN it was written at.
func testRecord(t *testing.T, name string, lsn pgdata.LSN) *pgdata.Record {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "repo", "pgdata", "testdata", "records", name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := pgdata.DecodeRecord(lsn, raw)
	if err != nil {
		t.Fatal(err)
	}
	rec.EndLSN = (lsn + pgdata.LSN(len(raw))).Align()
	return rec
}

// TestIngestOrder checks that Ingest takes records only in WAL order, and
// that a malformed record fails without writing anything: the ingest goes
// on with the next good one.
func TestIngestOrder(t *testing.T) {
	ctx := context.Background()
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	_, tl := newTestTimeline(t, r)
	control, err := os.ReadFile(filepath.Join("..", "..", "repo", "pgdata", "testdata", "control", "initdb", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := pgdata.ParseControlFile(control)
	if err != nil {
		t.Fatal(err)
	}
	// The records were written after a CREATE TABLE's first records: the
	// timeline ends right before smgr_create_main (0/1511B60, whose
	// xl_prev is 0/1511B30).
	create := testRecord(t, "smgr_create_main", 0x1511B60)
	w := datadir.NewDatadirWriter(tl)
	w.Begin(create.LSN)
	if err := w.PutControlFile(control); err != nil {
		t.Fatal(err)
	}
	if err := w.PutCheckpoint(&cf.CheckPointCopy); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(create.Header.Prev); err != nil {
		t.Fatal(err)
	}
	ing, err := NewWalIngest(ctx, tl, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if ing.SegSize() != pgdata.WALSegmentSize || ing.SystemID() != cf.SystemIdentifier {
		t.Errorf("SegSize, SystemID = %d, %d; want %d, %d from pg_control", ing.SegSize(), ing.SystemID(), pgdata.WALSegmentSize, cf.SystemIdentifier)
	}

	malformed := *create
	malformed.MainData = malformed.MainData[:10]
	if err := ing.Ingest(ctx, &malformed); err == nil {
		t.Fatal("a relation creation with 10 bytes of main data was ingested")
	}
	if got := tl.LastRecordLSN(); got != create.LSN {
		t.Fatalf("after a malformed record, the last record LSN is %v, want %v unchanged", got, create.LSN)
	}
	if err := ing.Ingest(ctx, create); err != nil {
		t.Fatalf("the good record after a malformed one: %v", err)
	}
	rel := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	if n, err := tl.RelSize(ctx, rel, pgdata.ForkMain, tl.LastRecordLSN()); err != nil || n != 0 {
		t.Errorf("size of the created relation = %d, %v; want 0", n, err)
	}
	if got, want := ing.CheckPoint().NextXid, uint64(create.Header.Xid)+1; got != want {
		t.Errorf("next xid after a record of xid %d = %d, want %d", create.Header.Xid, got, want)
	}

	tests := []struct {
		name string
		rec  *pgdata.Record
	}{
		{"the same record again", create},
		{"a record whose xl_prev is not the last record", testRecord(t, "smgr_truncate", create.EndLSN)},
	}
	for _, tt := range tests {
		if err := ing.Ingest(ctx, tt.rec); !errors.Is(err, ErrIngestOrder) {
			t.Errorf("%s: error = %v, want ErrIngestOrder", tt.name, err)
		}
	}
	if got := tl.LastRecordLSN(); got != create.EndLSN {
		t.Errorf("last record LSN = %v, want %v: refused records must change nothing", got, create.EndLSN)
	}
}
