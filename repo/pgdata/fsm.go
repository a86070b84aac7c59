package pgdata

// The free-space map's shape (fsm_internals.h, freespace.c): each page is
// a binary tree of one-byte nodes whose leaves stand for heap blocks (at
// the bottom level) or for pages of the level below; the tree of pages
// has FSMTreeDepth levels.
const (
	// fsmNodesPerPage is NodesPerPage: the page after its header and
	// fp_next_slot.
	fsmNodesPerPage = BlockSize - 24 - 4
	// fsmNonLeafNodesPerPage is NonLeafNodesPerPage.
	fsmNonLeafNodesPerPage = BlockSize/2 - 1
	// FSMSlotsPerPage is SlotsPerFSMPage: heap blocks (or lower pages) one
	// map page covers.
	FSMSlotsPerPage = fsmNodesPerPage - fsmNonLeafNodesPerPage
	// FSMTreeDepth is FSM_TREE_DEPTH for 8 KiB pages.
	FSMTreeDepth = 3
)

// fsmLeafPhysical is fsm_logical_to_physical for a bottom-level page: the
// block number of the logpageno-th leaf page, counting the upper-level
// pages stored before it.
func fsmLeafPhysical(logpageno uint32) BlockNumber {
	leafno := uint64(logpageno)
	var pages uint64
	for range FSMTreeDepth {
		pages += leafno + 1
		leafno /= FSMSlotsPerPage
	}
	return BlockNumber(pages - 1)
}

// FSMTruncation says what truncating a relation's heap to heapBlocks
// blocks does to its free-space map of fsmBlocks blocks
// (FreeSpaceMapPrepareTruncateRel): the map is cut to newBlocks blocks
// (ok is false if it stays as it is), and if partial is set, the leaf
// page newBlocks-1 keeps slots for some of the remaining heap blocks and
// must forget the others.
func FSMTruncation(heapBlocks, fsmBlocks BlockNumber) (newBlocks BlockNumber, partial, ok bool) {
	logpageno, slot := heapBlocks/FSMSlotsPerPage, heapBlocks%FSMSlotsPerPage
	phys := fsmLeafPhysical(logpageno)
	if slot > 0 {
		if phys >= fsmBlocks {
			return 0, false, false // the map was already smaller
		}
		return phys + 1, true, true
	}
	if fsmBlocks <= phys {
		return 0, false, false
	}
	return phys, false, true
}

// VMTruncation says what truncating a relation's heap to heapBlocks blocks
// does to its visibility map of vmBlocks blocks
// (visibilitymap_prepare_truncate): the map is cut to newBlocks blocks (ok
// is false if it stays as it is), and if partial is set, page newBlocks-1
// keeps bits for some of the remaining heap blocks and VMTruncatePage must
// clear the others. The page is changed even when the size stays.
func VMTruncation(heapBlocks, vmBlocks BlockNumber) (newBlocks BlockNumber, partial, ok bool) {
	mapBlock := VMBlock(heapBlocks)
	if heapBlocks%VMHeapBlocksPerPage != 0 {
		if mapBlock >= vmBlocks {
			return 0, false, false
		}
		return mapBlock + 1, true, mapBlock+1 < vmBlocks
	}
	if vmBlocks <= mapBlock {
		return 0, false, false
	}
	return mapBlock, false, true
}
