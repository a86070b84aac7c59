package pgdata

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// zstdDecoder is shared by all goroutines: DecodeAll is safe for
// concurrent use, and a decoder is costly to create. Its output is capped
// at one page, so a hostile frame cannot make it allocate more.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(BlockSize))
})

// PageImage returns the block's full-page image as the 8192-byte page it
// was taken from: decompressed (pglz, lz4 or zstd) and with the hole
// restored as zeros (RestoreBlockImage).
func (b *BlockRef) PageImage() ([]byte, error) {
	page := make([]byte, BlockSize)
	if err := b.RestorePageImage(page); err != nil {
		return nil, err
	}
	return page, nil
}

// RestorePageImage is PageImage into page, which must be BlockSize bytes.
func (b *BlockRef) RestorePageImage(page []byte) error {
	if !b.HasImage {
		return fmt.Errorf("block reference %d (%s %s blk %d) has no full-page image", b.ID, b.Rel, b.Fork, b.Block)
	}
	if len(page) != BlockSize {
		return fmt.Errorf("page buffer is %d bytes, want %d", len(page), BlockSize)
	}
	holeOff, holeLen := int(b.HoleOffset), int(b.HoleLength)
	if holeOff+holeLen > BlockSize {
		return fmt.Errorf("block reference %d: hole at %d of %d bytes does not fit in a page", b.ID, holeOff, holeLen)
	}
	want := BlockSize - holeLen
	// The image without its hole goes to page[:want] first; then the part
	// after the hole moves up.
	img := page[:want]
	switch {
	case b.BimgInfo&BkpImageCompressPGLZ != 0:
		if err := pglzDecompress(b.Image, img); err != nil {
			return fmt.Errorf("block reference %d: decompress pglz image: %w", b.ID, err)
		}
	case b.BimgInfo&BkpImageCompressLZ4 != 0:
		n, err := lz4.UncompressBlock(b.Image, img)
		if err != nil {
			return fmt.Errorf("block reference %d: decompress lz4 image: %w", b.ID, err)
		}
		if n != want {
			return fmt.Errorf("block reference %d: lz4 image decompressed to %d bytes, want %d", b.ID, n, want)
		}
	case b.BimgInfo&BkpImageCompressZstd != 0:
		dec, err := zstdDecoder()
		if err != nil {
			return fmt.Errorf("zstd decoder: %w", err)
		}
		out, err := dec.DecodeAll(b.Image, img[:0])
		if err != nil {
			return fmt.Errorf("block reference %d: decompress zstd image: %w", b.ID, err)
		}
		if len(out) != want {
			return fmt.Errorf("block reference %d: zstd image decompressed to %d bytes, want %d", b.ID, len(out), want)
		}
		if &out[0] != &img[0] {
			copy(img, out)
		}
	default:
		if len(b.Image) != want {
			return fmt.Errorf("block reference %d: image is %d bytes, want %d", b.ID, len(b.Image), want)
		}
		copy(img, b.Image)
	}
	if holeLen > 0 {
		copy(page[holeOff+holeLen:], page[holeOff:want])
		clear(page[holeOff : holeOff+holeLen])
	}
	return nil
}

// IsPageImageRecord reports whether r is an XLOG_FPI or XLOG_FPI_FOR_HINT
// record: one that holds nothing but full-page images, which xlog_redo
// restores and does nothing else with (log_newpage, a hint bit's image).
// The info flags (XLR_INFO_MASK) are masked off, as xlog_redo does.
func (r *Record) IsPageImageRecord() bool {
	if r.Rmgr() != RmgrXLOG {
		return false
	}
	info := r.RmgrInfo()
	return info == XLogFPI || info == XLogFPIForHint
}

// RestoredImagesKept reports whether replay leaves a block of r as it is
// once it has restored the block's applied full-page image: r is a record
// of a resource manager whose redo, for every record type, reads each
// block it changes with XLogReadBufferForRedo(Extended) and changes it only
// when that returns BLK_NEEDS_REDO, never when it returns BLK_RESTORED.
// Checked against PostgreSQL 15's source, function by function:
//
//   - Heap (heapam.c heap_redo): heap_xlog_insert, heap_xlog_delete,
//     heap_xlog_update (UPDATE and HOT_UPDATE, both blocks),
//     heap_xlog_confirm, heap_xlog_lock, heap_xlog_inplace; TRUNCATE has
//     no block. Their visibility-map clears are of the map fork, which the
//     records do not reference (OpsForRecord applies them in Go), and the
//     free-space map updates are not replayed here at all.
//   - Heap2 (heap2_redo): heap_xlog_prune, heap_xlog_vacuum,
//     heap_xlog_freeze_page, heap_xlog_visible (the heap block and the map
//     block alike), heap_xlog_multi_insert, heap_xlog_lock_updated;
//     NEW_CID and REWRITE have no block.
//   - Btree (nbtxlog.c btree_redo): btree_xlog_insert and
//     _bt_clear_incomplete_split, btree_xlog_split (left page and right
//     sibling; the new right page is initialized), btree_xlog_dedup,
//     btree_xlog_vacuum, btree_xlog_delete, btree_xlog_mark_page_halfdead,
//     btree_xlog_unlink_page, btree_xlog_newroot, _bt_restore_meta (the
//     pages they initialize carry no image: REGBUF_WILL_INIT implies
//     REGBUF_NO_IMAGE); REUSE_PAGE has no block.
//   - Generic (generic_xlog.c generic_redo): every block, one way.
//
// Not on the list: GiST (gistRedoClearFollowRight clears F_FOLLOW_RIGHT
// and sets the NSN of a page whatever XLogReadBufferForRedo returned),
// Hash (hash_xlog_split_allocate_page and hash_xlog_split_complete change
// restored pages), and GIN, SPGist, BRIN and Sequence, not checked.
func (r *Record) RestoredImagesKept() bool {
	switch r.Rmgr() {
	case RmgrHeap, RmgrHeap2, RmgrBtree, RmgrGeneric:
		return true
	}
	return false
}

// RestoredPage returns the page replay leaves when it restores the block's
// full-page image (XLogReadBufferForRedoExtended): the image
// (RestorePageImage) with pd_lsn set to lsn, the end of the record, unless
// the page is new (PageIsNew: pd_upper is 0), which replay leaves as it
// is. pd_checksum is the image's: replay sets it only when it writes the
// page out. That holds for an init fork's block too, which replay writes
// out at once (FlushOneBuffer): the checksum goes on the copy written
// (PageSetChecksumCopy), and the page in the buffer stays as restored.
func (b *BlockRef) RestoredPage(lsn LSN) ([]byte, error) {
	page, err := b.PageImage()
	if err != nil {
		return nil, err
	}
	if !PageIsNew(page) {
		SetPageLSN(page, lsn)
	}
	return page, nil
}

// PageIsNew reports whether page is a page never initialized (PageIsNew:
// pd_upper is 0), such as one of zeros.
func PageIsNew(page []byte) bool { return binary.LittleEndian.Uint16(page[pdUpper:]) == 0 }

// PageLSN returns page's pd_lsn (PageGetLSN): its xlogid, then its
// xrecoff, each a native (little-endian) uint32.
func PageLSN(page []byte) LSN {
	le := binary.LittleEndian
	return LSN(le.Uint32(page[0:]))<<32 | LSN(le.Uint32(page[4:]))
}

// SetPageLSN sets page's pd_lsn to lsn (PageSetLSN).
func SetPageLSN(page []byte, lsn LSN) {
	le := binary.LittleEndian
	le.PutUint32(page[0:], uint32(lsn>>32))
	le.PutUint32(page[4:], uint32(lsn))
}

// pdUpper is the offset of pd_upper in PageHeaderData.
const pdUpper = 14
