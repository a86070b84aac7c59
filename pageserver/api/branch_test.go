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

// TestBranchStateRow: the one-branch row of branch_list has every column
// but the sizes, and reads back as the branch without them.
func TestBranchStateRow(t *testing.T) {
	b := BranchInfo{Name: "dev", Timeline: id.NewTimelineID(), AncestorName: "main", AncestorTimeline: id.NewTimelineID().String(),
		AncestorLSN: 0x16B9188, LastRecordLSN: 0x1800000, PrevRecordLSN: 0x17FFF00, DiskConsistentLSN: 0x1700000,
		GCCutoffLSN: 0x1600000, LogicalSize: 7 << 20, LayerBytes: 3 << 20, WALBytes: 16 << 20, AcknowledgedLSN: 0x1800010,
		IngestStopped: "ingest of timeline T stopped at LSN 0/1800000: disk full"}
	if got, want := len(BranchStateColumns), len(BranchColumns)-3; got != want {
		t.Fatalf("BranchStateColumns has %d columns, want %d: %v", got, want, BranchStateColumns)
	}
	values := b.StateRow()
	if len(values) != len(BranchStateColumns) {
		t.Fatalf("StateRow has %d values for %d columns", len(values), len(BranchStateColumns))
	}
	row := map[string]string{}
	for i, v := range values {
		row[BranchStateColumns[i]] = v
	}
	want := b
	want.LogicalSize, want.LayerBytes, want.WALBytes = 0, 0, 0
	if got, err := ParseBranchRow(row); err != nil || got != want {
		t.Errorf("ParseBranchRow(%v) = %+v, %v; want %+v", row, got, err, want)
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
