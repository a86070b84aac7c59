package pgdata

import (
	"encoding/binary"
	"testing"
)

func TestClogLayout(t *testing.T) {
	tests := []struct {
		xid       uint32
		status    XidStatus
		page      uint32
		byteno    int
		byteValue byte
	}{
		{xid: 0, status: XidCommitted, page: 0, byteno: 0, byteValue: 0x01},
		{xid: 5, status: XidCommitted, page: 0, byteno: 1, byteValue: 0x04},
		{xid: 7, status: XidAborted, page: 0, byteno: 1, byteValue: 0x80},
		{xid: 32767, status: XidSubCommitted, page: 0, byteno: 8191, byteValue: 0xC0},
		{xid: 32768, status: XidAborted, page: 1, byteno: 0, byteValue: 0x02},
		{xid: 0xFFFFFFFF, status: XidCommitted, page: 131071, byteno: 8191, byteValue: 0x40},
	}
	for _, tt := range tests {
		if got := ClogPage(tt.xid); got != tt.page {
			t.Errorf("ClogPage(%d) = %d, want %d", tt.xid, got, tt.page)
		}
		page := make([]byte, BlockSize)
		ClogSetStatus(page, tt.xid, tt.status)
		if page[tt.byteno] != tt.byteValue {
			t.Errorf("xid %d %v: byte %d = %#02x, want %#02x", tt.xid, tt.status, tt.byteno, page[tt.byteno], tt.byteValue)
		}
		if got := ClogStatus(page, tt.xid); got != tt.status {
			t.Errorf("ClogStatus(%d) = %v, want %v", tt.xid, got, tt.status)
		}
	}
}

func TestClogSetStatusKeepsNeighbours(t *testing.T) {
	page := make([]byte, BlockSize)
	for xid := uint32(100); xid < 108; xid++ {
		ClogSetStatus(page, xid, XidAborted)
	}
	ClogSetStatus(page, 103, XidSubCommitted)
	ClogSetStatus(page, 103, XidCommitted) // sub-committed, then committed, as a commit does
	for xid := uint32(100); xid < 108; xid++ {
		want := XidAborted
		if xid == 103 {
			want = XidCommitted
		}
		if got := ClogStatus(page, xid); got != want {
			t.Errorf("ClogStatus(%d) = %v, want %v", xid, got, want)
		}
	}
}

func TestSLRUSegment(t *testing.T) {
	for _, tt := range []struct{ page, seg, blk uint32 }{{0, 0, 0}, {31, 0, 31}, {32, 1, 0}, {131071, 4095, 31}} {
		if seg, blk := SLRUSegment(tt.page); seg != tt.seg || blk != tt.blk {
			t.Errorf("SLRUSegment(%d) = %d, %d; want %d, %d", tt.page, seg, blk, tt.seg, tt.blk)
		}
	}
}

func TestParseSLRUZeroPageAndClogTruncate(t *testing.T) {
	le := binary.LittleEndian
	zero := &Record{Header: XLogRecordHeader{Rmid: RmgrCLOG, Info: XLogClogZeroPage}, MainData: le.AppendUint32(nil, 3)}
	if got, err := ParseSLRUZeroPage(zero); err != nil || got != 3 {
		t.Errorf("ParseSLRUZeroPage(CLOG_ZEROPAGE 3) = %d, %v", got, err)
	}
	members := &Record{Header: XLogRecordHeader{Rmid: RmgrMultiXact, Info: XLogMultiXactZeroMemPage}, MainData: le.AppendUint32(nil, 9)}
	if got, err := ParseSLRUZeroPage(members); err != nil || got != 9 {
		t.Errorf("ParseSLRUZeroPage(ZERO_MEM_PAGE 9) = %d, %v", got, err)
	}
	for _, bad := range []*Record{
		{Header: XLogRecordHeader{Rmid: RmgrCLOG, Info: XLogClogZeroPage}, MainData: []byte{1}},
		{Header: XLogRecordHeader{Rmid: RmgrCLOG, Info: XLogClogZeroPage}, MainData: le.AppendUint32(nil, 0x80000000)},
		{Header: XLogRecordHeader{Rmid: RmgrMultiXact, Info: XLogMultiXactCreateID}, MainData: le.AppendUint32(nil, 1)},
	} {
		if _, err := ParseSLRUZeroPage(bad); err == nil {
			t.Errorf("ParseSLRUZeroPage(%+v) succeeded, want an error", bad)
		}
	}
	trunc := &Record{Header: XLogRecordHeader{Rmid: RmgrCLOG, Info: XLogClogTruncate},
		MainData: le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 64), 2000000), 5)}
	got, err := ParseClogTruncate(trunc)
	if want := (ClogTruncate{PageNo: 64, OldestXact: 2000000, OldestXactDB: 5}); err != nil || got != want {
		t.Errorf("ParseClogTruncate = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParseClogTruncate(&Record{Header: XLogRecordHeader{Rmid: RmgrCLOG, Info: XLogClogTruncate}, MainData: make([]byte, 11)}); err == nil {
		t.Error("ParseClogTruncate of 11 bytes succeeded, want an error")
	}
}
