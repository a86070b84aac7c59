package pgdata

import (
	"encoding/binary"
	"reflect"
	"testing"
)

func TestVMLayout(t *testing.T) {
	if VMHeapBlocksPerPage != 32672 {
		t.Fatalf("VMHeapBlocksPerPage = %d, want 32672 (HEAPBLOCKS_PER_PAGE)", VMHeapBlocksPerPage)
	}
	tests := []struct {
		heapBlk  BlockNumber
		mapBlock BlockNumber
		byteno   int
		shift    uint
	}{
		{0, 0, 24, 0},
		{5, 0, 25, 2},
		{32671, 0, 8191, 6},
		{32672, 1, 24, 0},
	}
	for _, tt := range tests {
		if got := VMBlock(tt.heapBlk); got != tt.mapBlock {
			t.Errorf("VMBlock(%d) = %d, want %d", tt.heapBlk, got, tt.mapBlock)
		}
		page := make([]byte, BlockSize)
		for i := 24; i < BlockSize; i++ {
			page[i] = 0xFF
		}
		VMClearBits(page, tt.heapBlk, VMAllFrozen)
		if want := byte(0xFF) &^ (2 << tt.shift); page[tt.byteno] != want {
			t.Errorf("clear all-frozen of %d: byte %d = %#02x, want %#02x", tt.heapBlk, tt.byteno, page[tt.byteno], want)
		}
		if got := VMBits(page, tt.heapBlk); got != VMAllVisible {
			t.Errorf("VMBits(%d) = %d after clearing all-frozen, want all-visible only", tt.heapBlk, got)
		}
	}
}

func TestVMTruncatePage(t *testing.T) {
	full := func() []byte {
		p := make([]byte, BlockSize)
		for i := 24; i < BlockSize; i++ {
			p[i] = 0xFF
		}
		return p
	}
	tests := []struct {
		name     string
		mapBlock BlockNumber
		nHeap    BlockNumber
		kept     int // heap blocks of the page whose bits survive
	}{
		{"cut inside a byte", 0, 6, 6},
		{"cut at a byte boundary", 0, 8, 8},
		{"page before the cut", 0, 40000, VMHeapBlocksPerPage},
		{"page after the cut", 2, 40000, 0},
		{"cut inside the second page", 1, VMHeapBlocksPerPage + 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := full()
			VMTruncatePage(page, tt.mapBlock, tt.nHeap)
			first := tt.mapBlock * VMHeapBlocksPerPage
			for i := 0; i < VMHeapBlocksPerPage; i++ {
				want := VMValidBits
				if i >= tt.kept {
					want = 0
				}
				if got := VMBits(page, first+BlockNumber(i)); got != want {
					t.Fatalf("heap block %d: bits %d, want %d", first+BlockNumber(i), got, want)
				}
			}
		})
	}
}

func heapRecord(rmid RmgrID, info uint8, data []byte, blocks ...BlockRef) *Record {
	return &Record{LSN: 0x2000, Header: XLogRecordHeader{Rmid: rmid, Info: info}, MainData: data, Blocks: blocks}
}

func TestHeapVMChanges(t *testing.T) {
	rel := RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	blk := func(id uint8, n BlockNumber) BlockRef { return BlockRef{ID: id, Rel: rel, Block: n} }
	withFlags := func(n, at int, flags uint8) []byte { b := make([]byte, n); b[at] = flags; return b }
	tests := []struct {
		name string
		rec  *Record
		want []VMChange
	}{
		{"insert clears", heapRecord(RmgrHeap, XLogHeapInsert|XLogHeapInitPage, withFlags(3, 2, 1), blk(0, 7)),
			[]VMChange{{rel, 7, VMValidBits}}},
		{"insert keeps", heapRecord(RmgrHeap, XLogHeapInsert, withFlags(3, 2, 0x08), blk(0, 7)), nil},
		{"delete", heapRecord(RmgrHeap, XLogHeapDelete, withFlags(8, 7, 1), blk(0, 40000)),
			[]VMChange{{rel, 40000, VMValidBits}}},
		{"update across pages", heapRecord(RmgrHeap, XLogHeapUpdate, withFlags(14, 7, 3), blk(0, 9), blk(1, 2)),
			[]VMChange{{rel, 2, VMValidBits}, {rel, 9, VMValidBits}}},
		{"hot update on one page", heapRecord(RmgrHeap, XLogHeapHotUpdate, withFlags(14, 7, 1), blk(0, 4)),
			[]VMChange{{rel, 4, VMValidBits}}},
		{"lock clears all-frozen only", heapRecord(RmgrHeap, XLogHeapLock, withFlags(8, 7, 1), blk(0, 3)),
			[]VMChange{{rel, 3, VMAllFrozen}}},
		{"multi-insert", heapRecord(RmgrHeap2, XLogHeap2MultiInsert, withFlags(4, 0, 1), blk(0, 11)),
			[]VMChange{{rel, 11, VMValidBits}}},
		{"lock updated", heapRecord(RmgrHeap2, XLogHeap2LockUpdated, withFlags(8, 7, 1), blk(0, 12)),
			[]VMChange{{rel, 12, VMAllFrozen}}},
		{"prune never", heapRecord(RmgrHeap2, XLogHeap2Prune, withFlags(8, 0, 0xFF), blk(0, 1)), nil},
		{"btree never", heapRecord(RmgrBtree, 0, withFlags(8, 2, 0xFF), blk(0, 1)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HeapVMChanges(tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []*Record{
		heapRecord(RmgrHeap, XLogHeapDelete, make([]byte, 7), blk(0, 1)),
		heapRecord(RmgrHeap, XLogHeapInsert, withFlags(3, 2, 1)),
	} {
		if _, err := HeapVMChanges(bad); err == nil {
			t.Errorf("HeapVMChanges(%+v) succeeded, want an error", bad)
		}
	}
}

func TestParseSmgrTruncate(t *testing.T) {
	le := binary.LittleEndian
	var d []byte
	for _, v := range []uint32{100, 1663, 5, 16384, SmgrTruncateHeap | SmgrTruncateVM} {
		d = le.AppendUint32(d, v)
	}
	got, err := ParseSmgrTruncate(heapRecord(RmgrStorage, XLogSmgrTruncate, d))
	want := SmgrTruncate{Blocks: 100, Rel: RelFileNode{1663, 5, 16384}, Flags: SmgrTruncateHeap | SmgrTruncateVM}
	if err != nil || got != want {
		t.Errorf("ParseSmgrTruncate = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParseSmgrTruncate(heapRecord(RmgrStorage, XLogSmgrCreate, d)); err == nil {
		t.Error("ParseSmgrTruncate of a create record succeeded, want an error")
	}
}
