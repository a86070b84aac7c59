package pgdata

import (
	"encoding/binary"
	"fmt"
)

// XidStatus is a transaction's status in the commit log (clog.h).
type XidStatus uint8

// The commit log statuses (TRANSACTION_STATUS_*).
const (
	XidInProgress   XidStatus = 0
	XidCommitted    XidStatus = 1
	XidAborted      XidStatus = 2
	XidSubCommitted XidStatus = 3
)

// String names the status as clog.h does, without the prefix.
func (s XidStatus) String() string {
	switch s {
	case XidInProgress:
		return "in progress"
	case XidCommitted:
		return "committed"
	case XidAborted:
		return "aborted"
	case XidSubCommitted:
		return "sub-committed"
	}
	return fmt.Sprintf("status%d", uint8(s))
}

// Layout of the commit log, pg_xact (clog.c): two status bits per
// transaction, four transactions per byte, in pages of BlockSize bytes
// grouped SLRUPagesPerSegment to a segment file.
const (
	ClogBitsPerXact  = 2
	ClogXactsPerByte = 4
	ClogXactsPerPage = BlockSize * ClogXactsPerByte
	// SLRUPagesPerSegment is the number of pages in one SLRU segment file
	// (slru.h), for pg_xact and both pg_multixact SLRUs.
	SLRUPagesPerSegment = 32
)

// Record types of the CLOG resource manager (clog.h).
const (
	XLogClogZeroPage uint8 = 0x00
	XLogClogTruncate uint8 = 0x10
)

// ClogPage is the number of the pg_xact page holding xid's status
// (TransactionIdToPage).
func ClogPage(xid uint32) uint32 { return xid / ClogXactsPerPage }

// SLRUSegment splits an SLRU page number into the segment file number
// (the file name is its "%04X") and the page's index in that segment.
func SLRUSegment(pageno uint32) (segno, blk uint32) {
	return pageno / SLRUPagesPerSegment, pageno % SLRUPagesPerSegment
}

// clogPosition is the byte of xid's page and the shift of its two bits
// (TransactionIdToByte, TransactionIdToBIndex).
func clogPosition(xid uint32) (byteno int, shift uint) {
	idx := xid % ClogXactsPerPage
	return int(idx / ClogXactsPerByte), uint(xid%ClogXactsPerByte) * ClogBitsPerXact
}

// ClogSetStatus writes xid's status into page, the pg_xact page
// ClogPage(xid) (TransactionIdSetStatusBit).
func ClogSetStatus(page []byte, xid uint32, status XidStatus) {
	b, shift := clogPosition(xid)
	page[b] = page[b]&^(3<<shift) | byte(status&3)<<shift
}

// ClogStatus reads xid's status from page, the pg_xact page ClogPage(xid).
func ClogStatus(page []byte, xid uint32) XidStatus {
	b, shift := clogPosition(xid)
	return XidStatus(page[b]>>shift) & 3
}

// ParseSLRUZeroPage returns the page number of a record that zeroes an SLRU
// page: CLOG_ZEROPAGE, XLOG_MULTIXACT_ZERO_OFF_PAGE or
// XLOG_MULTIXACT_ZERO_MEM_PAGE (main data: an int).
func ParseSLRUZeroPage(r *Record) (uint32, error) {
	info := r.RmgrInfo()
	ok := (r.Rmgr() == RmgrCLOG && info == XLogClogZeroPage) ||
		(r.Rmgr() == RmgrMultiXact && (info == XLogMultiXactZeroOffPage || info == XLogMultiXactZeroMemPage))
	if !ok {
		return 0, fmt.Errorf("record at %v (%v, info %#02x) does not zero an SLRU page", r.LSN, r.Rmgr(), r.Header.Info)
	}
	if len(r.MainData) < 4 {
		return 0, fmt.Errorf("zero-page record at %v: main data is %d bytes, want 4", r.LSN, len(r.MainData))
	}
	pageno := int32(binary.LittleEndian.Uint32(r.MainData))
	if pageno < 0 {
		return 0, fmt.Errorf("zero-page record at %v: negative page number %d", r.LSN, pageno)
	}
	return uint32(pageno), nil
}

// ClogTruncate is a parsed CLOG_TRUNCATE record (xl_clog_truncate):
// segments before the one holding PageNo are removed.
type ClogTruncate struct {
	PageNo       uint32
	OldestXact   uint32
	OldestXactDB uint32
}

// ParseClogTruncate parses a CLOG_TRUNCATE record.
func ParseClogTruncate(r *Record) (ClogTruncate, error) {
	if r.Rmgr() != RmgrCLOG || r.RmgrInfo() != XLogClogTruncate {
		return ClogTruncate{}, fmt.Errorf("record at %v (%v, info %#02x) is not a CLOG truncation", r.LSN, r.Rmgr(), r.Header.Info)
	}
	if len(r.MainData) < 12 {
		return ClogTruncate{}, fmt.Errorf("CLOG truncation at %v: main data is %d bytes, want 12", r.LSN, len(r.MainData))
	}
	le := binary.LittleEndian
	pageno := int32(le.Uint32(r.MainData))
	if pageno < 0 {
		return ClogTruncate{}, fmt.Errorf("CLOG truncation at %v: negative page number %d", r.LSN, pageno)
	}
	return ClogTruncate{
		PageNo:       uint32(pageno),
		OldestXact:   le.Uint32(r.MainData[4:]),
		OldestXactDB: le.Uint32(r.MainData[8:]),
	}, nil
}
