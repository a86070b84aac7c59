package key

import (
	"sort"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

var rel = pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}

func TestOrderIsTupleOrder(t *testing.T) {
	// Listed in the order the keys must sort.
	want := []Key{
		DBDir(),
		TablespaceDir(),
		RelMap(1663, 5),
		RelDir(1663, 5),
		RelBlock(rel, pgdata.ForkMain, 0),
		RelBlock(rel, pgdata.ForkMain, 1),
		RelBlock(rel, pgdata.ForkMain, 256),
		RelBlock(rel, pgdata.ForkMain, 0xFFFFFFFE),
		RelSize(rel, pgdata.ForkMain),
		RelBlock(rel, pgdata.ForkFSM, 0),
		RelSize(rel, pgdata.ForkVM),
		RelBlock(pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16385}, pgdata.ForkMain, 0),
		RelMap(1663, 6),
		RelMap(1664, 0),
		SLRUDir(Clog),
		SLRUPage(Clog, 0, 0),
		SLRUPage(Clog, 0, 31),
		SLRUSegmentSize(Clog, 0),
		SLRUPage(Clog, 1, 0),
		SLRUDir(MultiXactOffsets),
		SLRUPage(MultiXactMembers, 0, 0),
		TwoPhaseDir(),
		TwoPhaseFile(3),
		TwoPhaseFile(1000),
		Control(),
		Checkpoint(),
		AuxFile("pg_logical/replorigin_checkpoint"),
	}
	got := append([]Key(nil), want...)
	sort.Slice(got, func(i, j int) bool { return got[i].Less(got[j]) })
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("position %d: got %v, want %v", i, got[i], want[i])
		}
		if !want[i].Less(Max) {
			t.Errorf("%v does not sort before Max", want[i])
		}
	}
}

func TestRanges(t *testing.T) {
	tests := []struct {
		name string
		r    Range
		k    Key
		want bool
	}{
		{"block in its relation", RelRange(rel, pgdata.ForkMain), RelBlock(rel, pgdata.ForkMain, 9), true},
		{"size in its relation", RelRange(rel, pgdata.ForkMain), RelSize(rel, pgdata.ForkMain), true},
		{"other fork", RelRange(rel, pgdata.ForkMain), RelBlock(rel, pgdata.ForkVM, 0), false},
		{"relmap in its database", DBRange(1663, 5), RelMap(1663, 5), true},
		{"block in its database", DBRange(1663, 5), RelSize(rel, pgdata.ForkInit), true},
		{"next database", DBRange(1663, 5), RelMap(1663, 6), false},
		{"everything", All, AuxFile("x"), true},
	}
	for _, tt := range tests {
		if got := tt.r.Contains(tt.k); got != tt.want {
			t.Errorf("%s: %v.Contains(%v) = %v, want %v", tt.name, tt.r, tt.k, got, tt.want)
		}
	}
	a := Range{Start: RelMap(1, 1), End: RelMap(1, 3)}
	b := Range{Start: RelMap(1, 2), End: RelMap(1, 4)}
	c := Range{Start: RelMap(1, 3), End: RelMap(1, 4)}
	if !a.Overlaps(b) || a.Overlaps(c) || !b.Overlaps(c) {
		t.Errorf("Overlaps wrong for %v %v %v", a, b, c)
	}
}

func TestNext(t *testing.T) {
	k := RelBlock(rel, pgdata.ForkMain, 7)
	if got, want := k.Next(), RelBlock(rel, pgdata.ForkMain, 8); got != want {
		t.Errorf("Next(%v) = %v, want %v", k, got, want)
	}
	k = Key{0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	if got, want := k.Next(), (Key{1}); got != want {
		t.Errorf("Next carries wrong: got %x, want %x", got, want)
	}
	if Max.Next() != Max {
		t.Errorf("Max.Next() = %x, want Max", Max.Next())
	}
}

func TestStringAndHex(t *testing.T) {
	tests := []struct {
		k    Key
		want string
	}{
		{RelBlock(rel, pgdata.ForkMain, 7), "rel 1663/5/16384.main blk 7"},
		{RelSize(rel, pgdata.ForkVM), "relsize 1663/5/16384.vm"},
		{RelMap(1664, 0), "relmap 1664/0"},
		{RelDir(1663, 5), "reldir 1663/5"},
		{DBDir(), "dbdir"},
		{TablespaceDir(), "tblspcdir"},
		{SLRUPage(Clog, 2, 5), "slru pg_xact/0002 blk 5"},
		{SLRUSegmentSize(MultiXactMembers, 0x1A), "slrusize pg_multixact/members/001A"},
		{SLRUDir(MultiXactOffsets), "slrudir pg_multixact/offsets"},
		{TwoPhaseFile(42), "twophase 42"},
		{TwoPhaseDir(), "twophasedir"},
		{Control(), "pg_control"},
		{Checkpoint(), "checkpoint"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
		back, err := ParseHex(tt.k.Hex())
		if err != nil || back != tt.k {
			t.Errorf("ParseHex(Hex(%v)) = %v, %v", tt.k, back, err)
		}
	}
	if _, err := ParseHex("zz"); err == nil {
		t.Error("ParseHex accepted a short string")
	}
	if _, err := ParseHex("0g0000000000000000000000000000000000"); err == nil {
		t.Error("ParseHex accepted a non-hex digit")
	}
}

func TestRelBlockDecode(t *testing.T) {
	r, fork, blk, ok := RelBlock(rel, pgdata.ForkFSM, 12).RelBlock()
	if !ok || r != rel || fork != pgdata.ForkFSM || blk != 12 {
		t.Errorf("RelBlock() = %v %v %v %v, want %v fsm 12 true", r, fork, blk, ok, rel)
	}
	for _, k := range []Key{RelSize(rel, pgdata.ForkMain), RelDir(1663, 5), SLRUPage(Clog, 0, 0)} {
		if _, _, _, ok := k.RelBlock(); ok {
			t.Errorf("%v decoded as a relation block", k)
		}
	}
}
