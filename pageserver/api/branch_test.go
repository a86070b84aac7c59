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
			AncestorLSN: 0x16B9188, LastRecordLSN: 0x1800000, PrevRecordLSN: 0x17FFF00, DiskConsistentLSN: 0x1700000},
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
