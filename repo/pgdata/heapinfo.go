package pgdata

import (
	"encoding/binary"
	"fmt"
)

// Record types of the Heap and Heap2 resource managers (heapam_xlog.h):
// the XLOG_HEAP_* values of xl_info & XLogHeapOpMask.
const (
	XLogHeapInsert    uint8 = 0x00
	XLogHeapDelete    uint8 = 0x10
	XLogHeapUpdate    uint8 = 0x20
	XLogHeapTruncate  uint8 = 0x30
	XLogHeapHotUpdate uint8 = 0x40
	XLogHeapConfirm   uint8 = 0x50
	XLogHeapLock      uint8 = 0x60
	XLogHeapInplace   uint8 = 0x70
	XLogHeapOpMask    uint8 = 0x70
	// XLogHeapInitPage in xl_info says the record initializes its page.
	XLogHeapInitPage uint8 = 0x80

	XLogHeap2Rewrite     uint8 = 0x00
	XLogHeap2Prune       uint8 = 0x10
	XLogHeap2Vacuum      uint8 = 0x20
	XLogHeap2FreezePage  uint8 = 0x30
	XLogHeap2Visible     uint8 = 0x40
	XLogHeap2MultiInsert uint8 = 0x50
	XLogHeap2LockUpdated uint8 = 0x60
	XLogHeap2NewCid      uint8 = 0x70
)

// Flags in heap records' main data saying a visibility-map bit was
// cleared (XLH_*_CLEARED).
const (
	xlhInsertAllVisibleCleared    uint8 = 1 << 0
	xlhDeleteAllVisibleCleared    uint8 = 1 << 0
	xlhUpdateOldAllVisibleCleared uint8 = 1 << 0
	xlhUpdateNewAllVisibleCleared uint8 = 1 << 1
	xlhLockAllFrozenCleared       uint8 = 1 << 0
)

// Bits of the visibility map (visibilitymapdefs.h), two per heap block.
const (
	VMAllVisible uint8 = 0x01
	VMAllFrozen  uint8 = 0x02
	VMValidBits  uint8 = VMAllVisible | VMAllFrozen
)

// Layout of the visibility map (visibilitymap.c): after the 24-byte page
// header, two bits per heap block, four blocks per byte.
const (
	vmPageHeaderSize = 24 // MAXALIGN(SizeOfPageHeaderData)
	vmMapSize        = BlockSize - vmPageHeaderSize
	// VMHeapBlocksPerPage is the number of heap blocks one map page covers
	// (HEAPBLOCKS_PER_PAGE).
	VMHeapBlocksPerPage = vmMapSize * 4
)

// VMBlock is the visibility-map block holding heapBlk's bits
// (HEAPBLK_TO_MAPBLOCK).
func VMBlock(heapBlk BlockNumber) BlockNumber { return heapBlk / VMHeapBlocksPerPage }

// vmPosition is the byte of the map page and the shift of heapBlk's bits
// (HEAPBLK_TO_MAPBYTE, HEAPBLK_TO_OFFSET).
func vmPosition(heapBlk BlockNumber) (byteno int, shift uint) {
	idx := heapBlk % VMHeapBlocksPerPage
	return vmPageHeaderSize + int(idx/4), uint(idx%4) * 2
}

// VMBits returns heapBlk's bits from page, the map page VMBlock(heapBlk).
func VMBits(page []byte, heapBlk BlockNumber) uint8 {
	b, shift := vmPosition(heapBlk)
	return page[b] >> shift & VMValidBits
}

// VMClearBits clears bits (of VMValidBits) of heapBlk in page, the map
// page VMBlock(heapBlk), as visibilitymap_clear does. The page LSN is left
// alone, as there.
func VMClearBits(page []byte, heapBlk BlockNumber, bits uint8) {
	b, shift := vmPosition(heapBlk)
	page[b] &^= (bits & VMValidBits) << shift
}

// VMTruncatePage clears, in page (map block mapBlock), the bits of every
// heap block at or after nHeapBlocks, the heap's new size: what
// visibilitymap_prepare_truncate does to the last remaining map page. A
// page wholly past the new end loses all its bits; one before it is left
// alone.
func VMTruncatePage(page []byte, mapBlock BlockNumber, nHeapBlocks BlockNumber) {
	first := uint64(mapBlock) * VMHeapBlocksPerPage
	if uint64(nHeapBlocks) >= first+VMHeapBlocksPerPage {
		return
	}
	keep := uint64(0)
	if uint64(nHeapBlocks) > first {
		keep = uint64(nHeapBlocks) - first
	}
	b, shift := vmPageHeaderSize+int(keep/4), uint(keep%4)*2
	page[b] &= byte(1)<<shift - 1
	clear(page[b+1:])
}

// VMChange is a change a heap record makes to the visibility map without
// referencing the map page: Bits of HeapBlock of relation Rel are cleared.
type VMChange struct {
	Rel       RelFileNode
	HeapBlock BlockNumber
	Bits      uint8
}

// MapBlock is the visibility-map block the change applies to.
func (c VMChange) MapBlock() BlockNumber { return VMBlock(c.HeapBlock) }

// HeapVMChanges returns the visibility-map bits a Heap or Heap2 record
// clears, as its redo does through visibilitymap_clear (heap_xlog_insert,
// _multi_insert, _delete, _update, _lock, _lock_updated): nothing for other
// records. The map page itself is not among the record's block references,
// so whoever rebuilds map pages must apply these.
func HeapVMChanges(r *Record) ([]VMChange, error) {
	var flagsAt int
	var flag uint8
	bits := VMValidBits
	switch r.Rmgr() {
	case RmgrHeap:
		switch r.Header.Info & XLogHeapOpMask {
		case XLogHeapInsert:
			flagsAt, flag = 2, xlhInsertAllVisibleCleared // xl_heap_insert.flags
		case XLogHeapDelete:
			flagsAt, flag = 7, xlhDeleteAllVisibleCleared // xl_heap_delete.flags
		case XLogHeapUpdate, XLogHeapHotUpdate:
			return heapUpdateVMChanges(r)
		case XLogHeapLock:
			flagsAt, flag, bits = 7, xlhLockAllFrozenCleared, VMAllFrozen // xl_heap_lock.flags
		default:
			return nil, nil
		}
	case RmgrHeap2:
		switch r.Header.Info & XLogHeapOpMask {
		case XLogHeap2MultiInsert:
			flagsAt, flag = 0, xlhInsertAllVisibleCleared // xl_heap_multi_insert.flags
		case XLogHeap2LockUpdated:
			flagsAt, flag, bits = 7, xlhLockAllFrozenCleared, VMAllFrozen // xl_heap_lock_updated.flags
		default:
			return nil, nil
		}
	default:
		return nil, nil
	}
	if len(r.MainData) <= flagsAt {
		return nil, fmt.Errorf("%v record at %v: main data is %d bytes, too short for its flags", r.Rmgr(), r.LSN, len(r.MainData))
	}
	if r.MainData[flagsAt]&flag == 0 {
		return nil, nil
	}
	b0, err := block0(r)
	if err != nil {
		return nil, err
	}
	return []VMChange{{Rel: b0.Rel, HeapBlock: b0.Block, Bits: bits}}, nil
}

// heapUpdateVMChanges follows heap_xlog_update: block 0 is the new tuple's
// page, block 1 (absent when the same) the old one's; both in block 0's
// relation.
func heapUpdateVMChanges(r *Record) ([]VMChange, error) {
	if len(r.MainData) < 8 {
		return nil, fmt.Errorf("heap update at %v: main data is %d bytes, too short for its flags", r.LSN, len(r.MainData))
	}
	flags := r.MainData[7] // xl_heap_update.flags
	if flags&(xlhUpdateOldAllVisibleCleared|xlhUpdateNewAllVisibleCleared) == 0 {
		return nil, nil
	}
	b0, err := block0(r)
	if err != nil {
		return nil, err
	}
	oldBlk := b0.Block
	for i := range r.Blocks {
		if r.Blocks[i].ID == 1 {
			oldBlk = r.Blocks[i].Block
		}
	}
	var changes []VMChange
	if flags&xlhUpdateOldAllVisibleCleared != 0 {
		changes = append(changes, VMChange{Rel: b0.Rel, HeapBlock: oldBlk, Bits: VMValidBits})
	}
	if flags&xlhUpdateNewAllVisibleCleared != 0 {
		changes = append(changes, VMChange{Rel: b0.Rel, HeapBlock: b0.Block, Bits: VMValidBits})
	}
	return changes, nil
}

func block0(r *Record) (*BlockRef, error) {
	for i := range r.Blocks {
		if r.Blocks[i].ID == 0 {
			return &r.Blocks[i], nil
		}
	}
	return nil, fmt.Errorf("%v record at %v has no block 0", r.Rmgr(), r.LSN)
}

// Record types of the Storage resource manager (storage_xlog.h) and the
// forks a truncation applies to (SMGR_TRUNCATE_*).
const (
	XLogSmgrCreate   uint8 = 0x10
	XLogSmgrTruncate uint8 = 0x20

	SmgrTruncateHeap uint32 = 0x0001
	SmgrTruncateVM   uint32 = 0x0002
	SmgrTruncateFSM  uint32 = 0x0004
)

// SmgrTruncate is a parsed XLOG_SMGR_TRUNCATE record (xl_smgr_truncate):
// relation Rel is cut to Blocks heap blocks, in the forks Flags name. With
// SmgrTruncateVM the map keeps what covers those blocks, and
// VMTruncatePage clears the bits past them on its last page.
type SmgrTruncate struct {
	Blocks BlockNumber
	Rel    RelFileNode
	Flags  uint32
}

// ParseSmgrTruncate parses an XLOG_SMGR_TRUNCATE record.
func ParseSmgrTruncate(r *Record) (SmgrTruncate, error) {
	if r.Rmgr() != RmgrStorage || r.RmgrInfo() != XLogSmgrTruncate {
		return SmgrTruncate{}, fmt.Errorf("record at %v (%v, info %#02x) is not a relation truncation", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 20 {
		return SmgrTruncate{}, fmt.Errorf("relation truncation at %v: main data is %d bytes, want 20", r.LSN, len(d))
	}
	return SmgrTruncate{
		Blocks: binary.LittleEndian.Uint32(d),
		Rel:    parseRelFileNode(d[4:]),
		Flags:  binary.LittleEndian.Uint32(d[16:]),
	}, nil
}
