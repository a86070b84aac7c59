package pgdata

import (
	"strings"
	"testing"
)

func TestPageHeaderCheck(t *testing.T) {
	const seg = 16 << 20
	long := XLogPageHeader{Magic: XLogPageMagic, Info: XLPLongHeader, TLI: 1, PageAddr: 2 * seg, SysID: 7, SegSize: seg, XLogBlockSize: XLogBlockSize}
	short := XLogPageHeader{Magic: XLogPageMagic, Info: XLPFirstIsContRecord, TLI: 1, PageAddr: 2*seg + 8192, RemLen: 100}
	tests := []struct {
		name   string
		h      XLogPageHeader
		addr   LSN
		segSz  uint64
		errHas string // "" when valid
	}{
		{"long header at a segment start", long, 2 * seg, seg, ""},
		{"short header", short, 2*seg + 8192, seg, ""},
		{"bad magic", with(short, func(h *XLogPageHeader) { h.Magic = 0xD10D }), 2*seg + 8192, seg,
			"invalid magic number D10D in log segment 000000010000000000000002, offset 8192"},
		{"unknown flag", with(short, func(h *XLogPageHeader) { h.Info |= 0x10 }), 2*seg + 8192, seg, "invalid info bits 0011"},
		{"short header at a segment start", with(short, func(h *XLogPageHeader) { h.PageAddr = 2 * seg }), 2 * seg, seg, "invalid info bits 0001"},
		{"other segment size", long, 2 * seg, 1 << 20, "incorrect segment size"},
		{"other block size", with(long, func(h *XLogPageHeader) { h.XLogBlockSize = 4096 }), 2 * seg, seg, "incorrect XLOG_BLCKSZ"},
		{"page address of another page", short, 2*seg + 16384, seg, "unexpected pageaddr 0/2002000 in log segment 000000010000000000000002, offset 16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.h.Encode(nil)
			h, err := ParseXLogPageHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if h != tt.h {
				t.Fatalf("Parse(Encode(h)) = %+v, want %+v", h, tt.h)
			}
			err = h.Check(tt.addr, tt.segSz, 1)
			if tt.errHas == "" {
				if err != nil {
					t.Errorf("Check: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("Check error = %v, want one containing %q", err, tt.errHas)
			}
		})
	}
}

func with(h XLogPageHeader, f func(*XLogPageHeader)) XLogPageHeader {
	f(&h)
	return h
}

func TestParsePageHeaderNeedsItsBytes(t *testing.T) {
	long := XLogPageHeader{Magic: XLogPageMagic, Info: XLPLongHeader, SegSize: 16 << 20, XLogBlockSize: XLogBlockSize}
	b := long.Encode(nil)
	for _, n := range []int{0, 23, 24, 39} {
		if _, err := ParseXLogPageHeader(b[:n]); err == nil {
			t.Errorf("ParseXLogPageHeader of %d bytes of a long header succeeded", n)
		}
	}
}
