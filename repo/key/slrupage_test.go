package key

import (
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

func TestSLRUPageDecode(t *testing.T) {
	tests := []struct {
		name     string
		k        Key
		s        SLRU
		seg, blk uint32
		ok       bool
	}{
		{"clog page", SLRUPage(Clog, 3, 7), Clog, 3, 7, true},
		{"members page", SLRUPage(MultiXactMembers, 0xABCD, 31), MultiXactMembers, 0xABCD, 31, true},
		{"segment size", SLRUSegmentSize(Clog, 3), 0, 0, 0, false},
		{"slru dir", SLRUDir(MultiXactOffsets), 0, 0, 0, false},
		{"relation block", RelBlock(pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}, pgdata.ForkMain, 7), 0, 0, 0, false},
		{"unknown SLRU", make6(kindSLRU, 9, 0, 0, 1, 0), 0, 0, 0, false},
	}
	for _, tt := range tests {
		s, seg, blk, ok := tt.k.SLRUPage()
		if s != tt.s || seg != tt.seg || blk != tt.blk || ok != tt.ok {
			t.Errorf("%s: SLRUPage() = %v, %d, %d, %v; want %v, %d, %d, %v", tt.name, s, seg, blk, ok, tt.s, tt.seg, tt.blk, tt.ok)
		}
	}
}
