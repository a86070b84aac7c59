package pgdata

// XLogRecordHeader is the fixed header that starts every WAL record
// (access/xlogrecord.h: XLogRecord).
type XLogRecordHeader struct {
	TotLen uint32 // xl_tot_len: length of the whole record
	Xid    uint32 // xl_xid
	Prev   LSN    // xl_prev: start of the previous record
	Info   uint8  // xl_info: high 4 bits for the rmgr, low 4 flags
	Rmid   RmgrID // xl_rmid
	CRC    uint32 // xl_crc: CRC32C of the payload, then the header's first 20 bytes
}

// Sizes and flags of the record format (access/xlogrecord.h).
const (
	XLogRecordHeaderSize = 24 // SizeOfXLogRecord
	XLRInfoMask          = 0x0F
	XLRRmgrInfoMask      = 0xF0
	XLRSpecialRelUpdate  = 0x01
	XLRCheckConsistency  = 0x02

	XLRMaxBlockID       = 32
	XLRBlockIDDataShort = 255
	XLRBlockIDDataLong  = 254
	XLRBlockIDOrigin    = 253
	XLRBlockIDTopXid    = 252

	BkpBlockForkMask = 0x0F
	BkpBlockHasImage = 0x10
	BkpBlockHasData  = 0x20
	BkpBlockWillInit = 0x40
	BkpBlockSameRel  = 0x80

	BkpImageHasHole      = 0x01
	BkpImageApply        = 0x02
	BkpImageCompressPGLZ = 0x04
	BkpImageCompressLZ4  = 0x08
	BkpImageCompressZstd = 0x10
)

// BlockRef is one block reference of a decoded record
// (XLogRecordBlockHeader and what follows it).
type BlockRef struct {
	ID    uint8       // block id within the record, 0..XLRMaxBlockID
	Rel   RelFileNode // the relation (resolved when BKPBLOCK_SAME_REL)
	Fork  ForkNumber
	Block BlockNumber
	// ForkFlags is the raw fork_flags byte of the block header.
	ForkFlags uint8
	// WillInit is set when redo rebuilds the page from nothing
	// (BKPBLOCK_WILL_INIT), so no earlier version of the page is needed.
	WillInit bool

	// HasImage is set when the record carries a full-page image.
	HasImage bool
	// ApplyImage is set when redo restores the image (BKPIMAGE_APPLY); an
	// image logged only for wal_consistency_checking is not applied.
	ApplyImage bool
	// BimgInfo is XLogRecordBlockImageHeader.bimg_info.
	BimgInfo uint8
	// HoleOffset and HoleLength locate the hole left out of the image.
	HoleOffset uint16
	HoleLength uint16
	// Image is the image as stored in the record: without its hole, and
	// compressed when BimgInfo says so. PageImage rebuilds the page.
	Image []byte

	// Data is the block's rmgr-specific data (BKPBLOCK_HAS_DATA).
	Data []byte
}

// Record is a decoded WAL record.
type Record struct {
	// LSN is where the record starts; EndLSN is where the next record
	// starts, PostgreSQL's EndRecPtr: the byte after the record's last
	// byte rounded up to a multiple of 8 (MAXALIGN), or the start of the
	// next segment after an XLOG_SWITCH record.
	LSN    LSN
	EndLSN LSN
	Header XLogRecordHeader
	// Raw is the whole record, header included, exactly Header.TotLen bytes
	// and contiguous even if it spanned pages: what redo decodes.
	Raw []byte
	// Blocks are the record's block references in the order they appear.
	Blocks []BlockRef
	// MainData is the rmgr-specific main data.
	MainData []byte
	// Origin is the replication origin (XLR_BLOCK_ID_ORIGIN), 0 if none.
	Origin uint16
	// TopXid is the top-level transaction id (XLR_BLOCK_ID_TOPLEVEL_XID)
	// of a subtransaction's record, 0 if none.
	TopXid uint32
}

// Rmgr is the record's resource manager.
func (r *Record) Rmgr() RmgrID { return r.Header.Rmid }

// RmgrInfo is the rmgr-specific part of xl_info (the high four bits),
// e.g. XLOG_HEAP_INSERT.
func (r *Record) RmgrInfo() uint8 { return r.Header.Info & XLRRmgrInfoMask }
