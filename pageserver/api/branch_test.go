package api

import (
	"testing"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

func TestBranchRowRoundTrip(t *testing.T) {
	for _, b := range []BranchInfo{
		{Name: "main", Timeline: id.NewTimelineID(), LastRecordLSN: 0x16B9188, DiskConsistentLSN: 0x1000000, RemoteConsistentLSN: 0xF00000},
		{Name: "dev", Timeline: id.NewTimelineID(), AncestorName: "main", AncestorTimeline: id.NewTimelineID().String(),
			AncestorLSN: 0x16B9188, LastRecordLSN: 0x1800000, PrevRecordLSN: 0x17FFF00, DiskConsistentLSN: 0x1700000,
			GCCutoffLSN: 0x1600000, LogicalSize: 7 << 20, LayerBytes: 3 << 20, WALBytes: 16 << 20},
	} {
		row := map[string]string{}
		for i, v := range b.Row() {
			row[BranchColumns[i]] = v
		}
		got, err := ParseBranchRow(row)
		if err != nil || got != b {
			t.Errorf("ParseBranchRow(%v) = %+v, %v; want %+v", row, got, err, b)
		}
	}
	// A row of a page server from before sizes and cut-offs still parses.
	old := map[string]string{"name": "main", "timeline_id": id.NewTimelineID().String(), "last_record_lsn": "0/16B9188", "disk_consistent_lsn": "0/16B9188"}
	if b, err := ParseBranchRow(old); err != nil || b.LogicalSize != 0 || b.GCCutoffLSN != 0 {
		t.Errorf("ParseBranchRow of a row without sizes = %+v, %v", b, err)
	}
	if _, err := ParseBranchRow(map[string]string{"name": "x", "timeline_id": "nope"}); err == nil {
		t.Errorf("a row with a bad timeline id parsed")
	}
}

func TestOptionalLSNText(t *testing.T) {
	for _, l := range []OptionalLSN{0, OptionalLSN(pgdata.LSN(0x16B3748))} {
		b, _ := l.MarshalText()
		var got OptionalLSN
		if err := got.UnmarshalText(b); err != nil || got != l {
			t.Errorf("%v: round trip %q -> %v, %v", pgdata.LSN(l), b, got, err)
		}
	}
}
