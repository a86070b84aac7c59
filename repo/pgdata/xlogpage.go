package pgdata

import (
	"encoding/binary"
	"fmt"
)

// WAL page header layout and flags (access/xlog_internal.h).
const (
	// XLogPageMagic is xlp_magic of PostgreSQL 15 (XLOG_PAGE_MAGIC); it
	// changes whenever the WAL format does.
	XLogPageMagic = 0xD110

	// XLogShortPageHeaderSize is SizeOfXLogShortPHD: the 20 bytes of
	// XLogPageHeaderData MAXALIGNed to 24.
	XLogShortPageHeaderSize = 24
	// XLogLongPageHeaderSize is SizeOfXLogLongPHD: XLogLongPageHeaderData,
	// the header of the first page of every segment.
	XLogLongPageHeaderSize = 40

	// XLPFirstIsContRecord: the page starts with the rest of a record
	// begun on an earlier page; xlp_rem_len says how many bytes remain.
	XLPFirstIsContRecord = 0x0001
	// XLPLongHeader: the header is an XLogLongPageHeaderData.
	XLPLongHeader = 0x0002
	// XLPBkpRemovable: full-page images starting on this page may be
	// removed by an archiver (unused since 9.5, still a valid flag).
	XLPBkpRemovable = 0x0004
	// XLPFirstIsOverwriteContRecord: the record that should have continued
	// here was abandoned at the end of recovery and replaced by an
	// XLOG_OVERWRITE_CONTRECORD record (CreateOverwriteContrecordRecord).
	XLPFirstIsOverwriteContRecord = 0x0008
	// XLPAllFlags are all the flags a valid page header may carry.
	XLPAllFlags = 0x000F

	// MinWALSegmentSize and MaxWALSegmentSize bound wal_segment_size,
	// which must also be a power of two (IsValidWalSegSize).
	MinWALSegmentSize = 1 << 20
	MaxWALSegmentSize = 1 << 30
)

// XLogPageHeader is the header at the start of every WAL page: PostgreSQL's
// XLogPageHeaderData, plus the fields of XLogLongPageHeaderData when Info
// has XLPLongHeader (the first page of a segment).
type XLogPageHeader struct {
	Magic    uint16 // xlp_magic
	Info     uint16 // xlp_info: XLP_* flags
	TLI      uint32 // xlp_tli: timeline of the first record on the page
	PageAddr LSN    // xlp_pageaddr: the LSN of the page's first byte
	// RemLen is xlp_rem_len: with XLPFirstIsContRecord, how many bytes of
	// a record begun on an earlier page remain (on this and later pages).
	RemLen uint32

	// Long header fields, zero in a short header.
	SysID         uint64 // xlp_sysid: pg_control's system identifier
	SegSize       uint32 // xlp_seg_size: wal_segment_size
	XLogBlockSize uint32 // xlp_xlog_blcksz: XLOG_BLCKSZ
}

// IsLong reports whether h is a long page header.
func (h *XLogPageHeader) IsLong() bool { return h.Info&XLPLongHeader != 0 }

// Size is the number of bytes the header occupies at the start of the page
// (XLogPageHeaderSize).
func (h *XLogPageHeader) Size() int {
	if h.IsLong() {
		return XLogLongPageHeaderSize
	}
	return XLogShortPageHeaderSize
}

// pageHeaderSizeOf is the size of the header starting b, judged from its
// xlp_info; b must hold at least 4 bytes.
func pageHeaderSizeOf(b []byte) int {
	if binary.LittleEndian.Uint16(b[2:])&XLPLongHeader != 0 {
		return XLogLongPageHeaderSize
	}
	return XLogShortPageHeaderSize
}

// ParseXLogPageHeader decodes the page header at the start of b. b must
// hold a short header, and a long one if xlp_info says so. It checks only
// that the bytes are there; Check validates the contents.
func ParseXLogPageHeader(b []byte) (XLogPageHeader, error) {
	if len(b) < XLogShortPageHeaderSize {
		return XLogPageHeader{}, fmt.Errorf("WAL page header: %d bytes, want at least %d", len(b), XLogShortPageHeaderSize)
	}
	le := binary.LittleEndian
	h := XLogPageHeader{
		Magic:    le.Uint16(b[0:]),
		Info:     le.Uint16(b[2:]),
		TLI:      le.Uint32(b[4:]),
		PageAddr: LSN(le.Uint64(b[8:])),
		RemLen:   le.Uint32(b[16:]),
	}
	if h.IsLong() {
		if len(b) < XLogLongPageHeaderSize {
			return XLogPageHeader{}, fmt.Errorf("long WAL page header: %d bytes, want %d", len(b), XLogLongPageHeaderSize)
		}
		h.SysID = le.Uint64(b[24:])
		h.SegSize = le.Uint32(b[32:])
		h.XLogBlockSize = le.Uint32(b[36:])
	}
	return h, nil
}

// Encode appends the header's bytes (24 or 40, padding zeroed) to b, for
// writers of WAL such as the basebackup's synthetic checkpoint segment.
func (h *XLogPageHeader) Encode(b []byte) []byte {
	var buf [XLogLongPageHeaderSize]byte
	le := binary.LittleEndian
	le.PutUint16(buf[0:], h.Magic)
	le.PutUint16(buf[2:], h.Info)
	le.PutUint32(buf[4:], h.TLI)
	le.PutUint64(buf[8:], uint64(h.PageAddr))
	le.PutUint32(buf[16:], h.RemLen)
	if h.IsLong() {
		le.PutUint64(buf[24:], h.SysID)
		le.PutUint32(buf[32:], h.SegSize)
		le.PutUint32(buf[36:], h.XLogBlockSize)
	}
	return append(b, buf[:h.Size()]...)
}

// Check validates h as the header of the page at pageAddr in WAL with
// segments of segSize bytes, as XLogReaderValidatePageHeader does: magic,
// flags, a long header on the first page of a segment with matching
// segment and block sizes, and xlp_pageaddr equal to pageAddr. tli is the
// timeline of the segment being read; it only names the segment file in
// the error, whose text is PostgreSQL's. The checks that need history
// (timeline never going backwards, one system identifier) are the
// reader's.
func (h *XLogPageHeader) Check(pageAddr LSN, segSize uint64, tli uint32) error {
	segNo := pageAddr.SegmentNo(segSize)
	offset := pageAddr.SegmentOffset(segSize)
	where := func() string {
		return fmt.Sprintf("in log segment %s, offset %d", WALFileName(tli, segNo, segSize), offset)
	}
	if h.Magic != XLogPageMagic {
		return fmt.Errorf("invalid magic number %04X %s", h.Magic, where())
	}
	if h.Info&^XLPAllFlags != 0 {
		return fmt.Errorf("invalid info bits %04X %s", h.Info, where())
	}
	if h.IsLong() {
		if uint64(h.SegSize) != segSize {
			return fmt.Errorf("WAL file is from different database system: incorrect segment size in page header")
		}
		if h.XLogBlockSize != XLogBlockSize {
			return fmt.Errorf("WAL file is from different database system: incorrect XLOG_BLCKSZ in page header")
		}
	} else if offset == 0 {
		// The first page of a segment must identify the cluster.
		return fmt.Errorf("invalid info bits %04X %s", h.Info, where())
	}
	if h.PageAddr != pageAddr {
		return fmt.Errorf("unexpected pageaddr %s %s", h.PageAddr, where())
	}
	return nil
}

// ValidWALSegmentSize reports whether size is a wal_segment_size PostgreSQL
// accepts: a power of two from 1 MiB to 1 GiB (IsValidWalSegSize).
func ValidWALSegmentSize(size uint64) bool {
	return size >= MinWALSegmentSize && size <= MaxWALSegmentSize && size&(size-1) == 0
}
