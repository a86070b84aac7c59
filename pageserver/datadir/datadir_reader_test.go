package datadir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// TestDatadirReader writes two records through a DatadirWriter and reads
// the model back at each LSN: what a record changes is visible at its LSN
// and not before, holes read as zero pages, and missing things are the
// errors callers branch on.
func TestDatadirReader(t *testing.T) {
	ctx := context.Background()
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	_, tl := newTestTimeline(t, r)

	const lsn1, lsn2, lsn3 = pgdata.LSN(0x1000), pgdata.LSN(0x2000), pgdata.LSN(0x3000)
	db := Database{pgdata.DefaultTablespaceOID, 5}
	rel := pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: 16384}
	other := pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: 16390}
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, pgdata.BlockSize) }
	control := (&pgdata.ControlFile{
		SystemIdentifier: 42, ControlVersion: pgdata.ControlVersion, CatalogVersion: pgdata.CatalogVersion,
		State: pgdata.DBShutdowned, XLogSegSize: pgdata.WALSegmentSize, BlockSize: pgdata.BlockSize,
	}).Encode()

	w := NewDatadirWriter(tl)
	record := func(lsn, prev pgdata.LSN, changes ...error) {
		t.Helper()
		for _, err := range changes {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(prev); err != nil {
			t.Fatal(err)
		}
	}
	w.Begin(lsn1)
	record(lsn1, lsn1-0x100,
		w.SetRelSize(ctx, rel, pgdata.ForkMain, 3),
		w.PutRelBlock(rel, pgdata.ForkMain, 0, value.Image(page(1))),
		w.PutRelBlock(rel, pgdata.ForkMain, 2, value.Image(page(3))),
		w.SetRelSize(ctx, other, pgdata.ForkMain, 2),
		w.PutRelMap(db, []byte("relmap")),
		w.PutAuxFile(ctx, "PG_VERSION", []byte("15\n")),
		w.SetSLRUSegmentSize(ctx, key.Clog, 0, 1),
	)
	w.Begin(lsn2)
	record(lsn2, lsn2-0x100,
		w.SetRelSize(ctx, rel, pgdata.ForkMain, 1),
		w.CreateRelation(ctx, rel, pgdata.ForkFSM),
		w.DropRelation(ctx, other, pgdata.ForkMain),
		w.PutControlFile(control),
		w.PutTwoPhaseFile(ctx, 700, []byte("state")),
	)

	at := map[pgdata.LSN]*DatadirReader{lsn1: NewDatadirReader(tl, lsn1), lsn2: NewDatadirReader(tl, lsn2), lsn3: NewDatadirReader(tl, lsn3)}
	type check struct {
		name    string
		lsn     pgdata.LSN
		read    func(r *DatadirReader) (any, error)
		want    any
		wantErr error
	}
	relSize := func(rel pgdata.RelFileNode, f pgdata.ForkNumber) func(*DatadirReader) (any, error) {
		return func(r *DatadirReader) (any, error) { return r.RelSize(ctx, rel, f) }
	}
	exists := func(rel pgdata.RelFileNode, f pgdata.ForkNumber) func(*DatadirReader) (any, error) {
		return func(r *DatadirReader) (any, error) { return r.RelExists(ctx, rel, f) }
	}
	relPage := func(blk uint32) func(*DatadirReader) (any, error) {
		return func(r *DatadirReader) (any, error) { return r.RelPage(ctx, rel, pgdata.ForkMain, blk) }
	}
	dbSize := func(r *DatadirReader) (any, error) { return r.DBSize(ctx, db) }
	controlFile := func(r *DatadirReader) (any, error) {
		cf, err := r.ControlFile(ctx)
		if err != nil {
			return nil, err
		}
		return cf.SystemIdentifier, nil
	}
	for _, c := range []check{
		{"databases", lsn1, func(r *DatadirReader) (any, error) { return r.Databases(ctx) }, DBDir{db}, nil},
		{"relations", lsn1, func(r *DatadirReader) (any, error) { return r.Relations(ctx, db) },
			RelDir{{16384, 1 << pgdata.ForkMain}, {16390, 1 << pgdata.ForkMain}}, nil},
		{"relations after a create and a drop", lsn2, func(r *DatadirReader) (any, error) { return r.Relations(ctx, db) },
			RelDir{{16384, 1<<pgdata.ForkMain | 1<<pgdata.ForkFSM}}, nil},
		{"size", lsn1, relSize(rel, pgdata.ForkMain), uint32(3), nil},
		{"size after truncation", lsn2, relSize(rel, pgdata.ForkMain), uint32(1), nil},
		{"size of a fork never created", lsn1, relSize(rel, pgdata.ForkVM), nil, ErrRelationNotFound},
		{"size of a dropped fork", lsn2, relSize(other, pgdata.ForkMain), uint32(0), nil},
		{"exists", lsn1, exists(rel, pgdata.ForkMain), true, nil},
		{"fsm before its creation", lsn1, exists(rel, pgdata.ForkFSM), false, nil},
		{"fsm after its creation", lsn2, exists(rel, pgdata.ForkFSM), true, nil},
		{"dropped", lsn2, exists(other, pgdata.ForkMain), false, nil},
		{"page", lsn1, relPage(0), page(1), nil},
		{"hole reads as zeros", lsn1, relPage(1), page(0), nil},
		{"page 2", lsn1, relPage(2), page(3), nil},
		{"database size", lsn1, dbSize, int64(5 * pgdata.BlockSize), nil},
		{"database size after truncate, create, drop", lsn2, dbSize, int64(1 * pgdata.BlockSize), nil},
		{"relmap", lsn1, func(r *DatadirReader) (any, error) {
			b, found, err := r.RelMap(ctx, db)
			return fmt.Sprintf("%s %v", b, found), err
		}, "relmap true", nil},
		{"relmap of an unknown database", lsn1, func(r *DatadirReader) (any, error) {
			_, found, err := r.RelMap(ctx, Database{pgdata.DefaultTablespaceOID, 6})
			return found, err
		}, false, nil},
		{"aux files", lsn1, func(r *DatadirReader) (any, error) { return r.AuxFiles(ctx) }, AuxDir{"PG_VERSION"}, nil},
		{"aux file", lsn1, func(r *DatadirReader) (any, error) { return r.AuxFile(ctx, "PG_VERSION") }, []byte("15\n"), nil},
		{"SLRU segments", lsn1, func(r *DatadirReader) (any, error) { return r.SLRUSegments(ctx, key.Clog) }, SLRUDir{0}, nil},
		{"SLRU segment size", lsn1, func(r *DatadirReader) (any, error) { return r.SLRUSegmentSize(ctx, key.Clog, 0) }, uint32(1), nil},
		{"SLRU page never written", lsn1, func(r *DatadirReader) (any, error) { return r.SLRUPage(ctx, key.Clog, 0, 0) }, page(0), nil},
		{"no SLRU segments", lsn1, func(r *DatadirReader) (any, error) { return r.SLRUSegments(ctx, key.MultiXactMembers) }, SLRUDir(nil), nil},
		{"no prepared transactions", lsn1, func(r *DatadirReader) (any, error) { return r.TwoPhaseFiles(ctx) }, TwoPhaseDir(nil), nil},
		{"prepared transactions", lsn2, func(r *DatadirReader) (any, error) { return r.TwoPhaseFiles(ctx) }, TwoPhaseDir{700}, nil},
		{"two-phase file", lsn2, func(r *DatadirReader) (any, error) { return r.TwoPhaseFile(ctx, 700) }, []byte("state"), nil},
		{"pg_control before it is stored", lsn1, controlFile, nil, ErrNoControlFile},
		{"checkpoint never stored", lsn2, func(r *DatadirReader) (any, error) { return r.Checkpoint(ctx) }, nil, ErrNoControlFile},
		{"pg_control", lsn2, controlFile, uint64(42), nil},
		{"LSN not reached", lsn3, dbSize, nil, repo.ErrLSNNotReached},
	} {
		got, err := c.read(at[c.lsn])
		switch {
		case c.wantErr != nil:
			if !errors.Is(err, c.wantErr) {
				t.Errorf("%s at %v: error = %v, want %v", c.name, c.lsn, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("%s at %v: %v", c.name, c.lsn, err)
		case !reflect.DeepEqual(got, c.want):
			t.Errorf("%s at %v = %.40v, want %.40v", c.name, c.lsn, got, c.want)
		}
	}
}
