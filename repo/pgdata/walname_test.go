package pgdata

import "testing"

func TestWALFileName(t *testing.T) {
	tests := []struct {
		tli     uint32
		segNo   uint64
		segSize uint64
		want    string
	}{
		{1, 1, 16 << 20, "000000010000000000000001"},
		{1, 0xFF, 16 << 20, "0000000100000000000000FF"},
		{1, 0x100, 16 << 20, "000000010000000100000000"},
		{2, 0x1234, 16 << 20, "000000020000001200000034"},
		{1, 0x1000, 1 << 20, "000000010000000100000000"},
		{0xA, 7, 1 << 30, "0000000A0000000100000003"},
	}
	for _, tt := range tests {
		if got := WALFileName(tt.tli, tt.segNo, tt.segSize); got != tt.want {
			t.Errorf("WALFileName(%d, %#x, %d) = %s, want %s", tt.tli, tt.segNo, tt.segSize, got, tt.want)
		}
		tli, segNo, partial, err := ParseWALFileName(tt.want, tt.segSize)
		if err != nil || tli != tt.tli || segNo != tt.segNo || partial {
			t.Errorf("ParseWALFileName(%s) = %d, %#x, %v, %v; want %d, %#x", tt.want, tli, segNo, partial, err, tt.tli, tt.segNo)
		}
	}
	if _, segNo, partial, err := ParseWALFileName("000000010000000000000003.partial", 16<<20); err != nil || segNo != 3 || !partial {
		t.Errorf("ParseWALFileName of a .partial file = %d, %v, %v", segNo, partial, err)
	}
	for _, bad := range []string{
		"", "00000001000000000000001", "0000000100000000000000010", "00000001000000000000000g",
		"000000010000000000000001.history", "00000001.history", "000000010000000000000100", // seg part too big for 16 MiB
	} {
		if _, _, _, err := ParseWALFileName(bad, 16<<20); err == nil {
			t.Errorf("ParseWALFileName(%q) succeeded, want an error", bad)
		}
	}
}

func TestRelationPath(t *testing.T) {
	tests := []struct {
		rel   RelFileNode
		fork  ForkNumber
		segNo uint32
		want  string
	}{
		{RelFileNode{1663, 5, 16384}, ForkMain, 0, "base/5/16384"},
		{RelFileNode{1663, 5, 16384}, ForkVM, 1, "base/5/16384_vm.1"},
		{RelFileNode{1663, 5, 16384}, ForkFSM, 0, "base/5/16384_fsm"},
		{RelFileNode{1663, 5, 16384}, ForkInit, 0, "base/5/16384_init"},
		{RelFileNode{1664, 0, 1262}, ForkMain, 0, "global/1262"},
		{RelFileNode{1664, 0, 1262}, ForkFSM, 2, "global/1262_fsm.2"},
		{RelFileNode{16400, 5, 16401}, ForkMain, 12, "pg_tblspc/16400/PG_15_202209061/5/16401.12"},
	}
	for _, tt := range tests {
		if got := RelationPath(tt.rel, tt.fork, tt.segNo); got != tt.want {
			t.Errorf("RelationPath(%v, %v, %d) = %s, want %s", tt.rel, tt.fork, tt.segNo, got, tt.want)
		}
		rel, fork, segNo, err := ParseRelationPath(tt.want)
		if err != nil || rel != tt.rel || fork != tt.fork || segNo != tt.segNo {
			t.Errorf("ParseRelationPath(%s) = %v, %v, %d, %v", tt.want, rel, fork, segNo, err)
		}
	}
	for _, bad := range []string{
		"base/5", "base/5/16384_main", "base/5/16384_xx", "base/5/16384.0", "base/5/016384",
		"base/5/t3_16384", "base/x/1", "global/1/2", "pg_tblspc/1/PG_14_1/5/6", "base/5/16384.",
		"base/5/4294967296", "pg_wal/000000010000000000000001",
	} {
		if _, _, _, err := ParseRelationPath(bad); err == nil {
			t.Errorf("ParseRelationPath(%q) succeeded, want an error", bad)
		}
	}
}
