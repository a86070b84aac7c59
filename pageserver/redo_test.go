package pageserver

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// TestRedoSLRU checks that SLRU pages are rebuilt in Go, page numbers
// counted across segments, without a redo process (the Manager is nil:
// touching it would panic).
func TestRedoSLRU(t *testing.T) {
	r := NewRedo(nil)
	ctx := context.Background()
	xid := uint32(3*pgdata.SLRUPagesPerSegment+2)*pgdata.ClogXactsPerPage + 5 // segment 3, page 2
	segNo, blk := pgdata.SLRUSegment(pgdata.ClogPage(xid))
	k := key.SLRUPage(key.Clog, segNo, blk)
	base := bytes.Repeat([]byte{0x55}, pgdata.BlockSize) // every xid committed
	recs := []value.Record{
		{LSN: 0x100, Value: value.OpValue(value.ClogSetStatus{Status: uint8(pgdata.XidAborted), Xids: []uint32{xid, 7}}, false)},
	}
	got, err := r.Apply(ctx, id.NewTenantID(), k, base, recs, 0x100)
	if err != nil {
		t.Fatal(err)
	}
	if s := pgdata.ClogStatus(got, xid); s != pgdata.XidAborted {
		t.Errorf("status of xid %d = %v, want aborted", xid, s)
	}
	if s := pgdata.ClogStatus(got, xid+1); s != pgdata.XidCommitted {
		t.Errorf("status of xid %d = %v, want committed as in the base image", xid+1, s)
	}
	if base[0] != 0x55 || bytes.Count(base, []byte{0x55}) != len(base) {
		t.Error("Apply changed the base image")
	}
	// Without a base, the page starts as zeros.
	got, err = r.Apply(ctx, id.NewTenantID(), k, nil, recs, 0x100)
	if err != nil || pgdata.ClogStatus(got, xid) != pgdata.XidAborted || pgdata.ClogStatus(got, xid+1) != pgdata.XidInProgress {
		t.Errorf("redo without a base: %v", err)
	}

	bad := []struct {
		name string
		k    key.Key
		recs []value.Record
		want string
	}{
		{"a WAL record on an SLRU page", k, []value.Record{{LSN: 0x100, Value: value.WALRecord([]byte("raw"), false)}}, "only operations"},
		{"an undecodable operation", k, []value.Record{{LSN: 0x100, Value: value.Value{Kind: value.KindOp, Data: []byte{99}}}}, "record at 0/100"},
		{"a key with only images", key.RelMap(1663, 5), recs, "holds only images"},
		{"a relation size", key.SLRUSegmentSize(key.Clog, 0), recs, "holds only images"},
	}
	for _, tt := range bad {
		if _, err := r.Apply(ctx, id.NewTenantID(), tt.k, nil, tt.recs, 0x100); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want one saying %q", tt.name, err, tt.want)
		}
	}
}
