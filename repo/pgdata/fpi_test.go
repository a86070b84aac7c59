package pgdata

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// checkPageHeader checks what any page PostgreSQL writes satisfies
// (PageHeaderData, PageIsVerifiedExtended): pd_lower <= pd_upper <=
// pd_special <= BLCKSZ, the page size and layout version, and a pd_lsn not
// after the record that logged the page.
func checkPageHeader(page []byte, recLSN LSN) error {
	le := binary.LittleEndian
	lsn := LSN(le.Uint32(page[0:]))<<32 | LSN(le.Uint32(page[4:])) // PageXLogRecPtr
	lower, upper, special := le.Uint16(page[12:]), le.Uint16(page[14:]), le.Uint16(page[16:])
	version := le.Uint16(page[18:])
	switch {
	case lower < 24 || lower > upper || upper > special || special > BlockSize:
		return fmt.Errorf("pd_lower %d, pd_upper %d, pd_special %d out of order", lower, upper, special)
	case version != BlockSize|4:
		return fmt.Errorf("pd_pagesize_version %#x, want %#x", version, BlockSize|4)
	case lsn > recLSN:
		return fmt.Errorf("pd_lsn %s is after the record at %s", lsn, recLSN)
	}
	return nil
}

func TestPageImagesOfEveryCompression(t *testing.T) {
	methods := map[string]uint8{
		"off": 0, "pglz": BkpImageCompressPGLZ, "lz4": BkpImageCompressLZ4, "zstd": BkpImageCompressZstd,
	}
	for name, method := range methods {
		t.Run(name, func(t *testing.T) {
			recs, _ := readAllWAL(t, []string{filepath.Join("testdata", "wal", name)}, WALReadOptions{})
			images, compressed, holes := 0, 0, 0
			for _, rec := range recs {
				for i := range rec.Blocks {
					b := &rec.Blocks[i]
					if !b.HasImage {
						continue
					}
					images++
					if b.BimgInfo&method != 0 {
						compressed++
					}
					if b.HoleLength > 0 {
						holes++
					}
					page, err := b.PageImage()
					if err != nil {
						t.Fatalf("record %s block %d: %v", rec.LSN, b.ID, err)
					}
					if err := checkPageHeader(page, rec.LSN); err != nil {
						t.Errorf("record %s block %d (%s blk %d): %v", rec.LSN, b.ID, b.Rel, b.Block, err)
					}
					if hole := page[b.HoleOffset : int(b.HoleOffset)+int(b.HoleLength)]; !bytes.Equal(hole, make([]byte, len(hole))) {
						t.Errorf("record %s block %d: the hole is not zeros", rec.LSN, b.ID)
					}
				}
			}
			if images == 0 || holes == 0 {
				t.Fatalf("%d images, %d with a hole: the sample lacks what this test needs", images, holes)
			}
			if method != 0 && compressed == 0 {
				t.Errorf("none of the %d images is compressed with %s", images, name)
			}
		})
	}
}

func TestPageImageRejectsBadImages(t *testing.T) {
	page := make([]byte, BlockSize)
	for i := range page {
		page[i] = byte(i)
	}
	tests := []struct {
		name string
		b    BlockRef
		want string
	}{
		{"no image", BlockRef{}, "has no full-page image"},
		{"hole past the page", BlockRef{HasImage: true, BimgInfo: BkpImageHasHole, HoleOffset: 8000, HoleLength: 500, Image: page[:7692]}, "does not fit"},
		{"image shorter than the page minus the hole", BlockRef{HasImage: true, BimgInfo: BkpImageHasHole, HoleOffset: 100, HoleLength: 100, Image: page[:8000]}, "want 8092"},
		{"corrupt pglz", BlockRef{HasImage: true, BimgInfo: BkpImageCompressPGLZ, Image: []byte{0x01, 0x0F, 0x01}}, "pglz"},
		{"corrupt lz4", BlockRef{HasImage: true, BimgInfo: BkpImageCompressLZ4, Image: []byte{0xF0, 1, 2}}, "lz4"},
		{"corrupt zstd", BlockRef{HasImage: true, BimgInfo: BkpImageCompressZstd, Image: []byte{1, 2, 3, 4}}, "zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.b.PageImage()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("PageImage() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPageImageRestoresTheHole(t *testing.T) {
	want := make([]byte, BlockSize)
	for i := range want {
		want[i] = byte(i%251 + 1)
	}
	clear(want[1000:3000])
	img := append(append([]byte{}, want[:1000]...), want[3000:]...)
	b := BlockRef{HasImage: true, BimgInfo: BkpImageHasHole | BkpImageApply, HoleOffset: 1000, HoleLength: 2000, Image: img}
	got, err := b.PageImage()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("page with its hole restored differs from the original")
	}
}

// testPage is a standard page with its hole, pd_lower to pd_upper, of
// zeros, and pd_lsn, the flags and the rest of the header set.
func testPage(lsn LSN, lower, upper uint16) []byte {
	page := make([]byte, BlockSize)
	for i := range page {
		page[i] = byte(i%251 + 1)
	}
	le := binary.LittleEndian
	SetPageLSN(page, lsn)
	le.PutUint16(page[12:], lower)
	le.PutUint16(page[14:], upper)
	le.PutUint16(page[16:], BlockSize)
	le.PutUint16(page[18:], BlockSize|4)
	clear(page[lower:upper])
	return page
}

func TestRestoredPage(t *testing.T) {
	const recEnd = LSN(0x1_2345_6788)
	old := LSN(0x1_0000_0010)
	tests := []struct {
		name string
		page []byte // the page the image was taken of
		hole bool   // the image leaves pd_lower..pd_upper out
		want []byte // nil: page with pd_lsn set to recEnd
	}{
		{"hole after the header", testPage(old, 24, 8000), true, nil},
		{"hole in the middle", testPage(old, 400, 5000), true, nil},
		{"hole of one byte", testPage(old, 4000, 4001), true, nil},
		{"hole up to pd_special", testPage(old, 8000, BlockSize), true, nil},
		{"no hole", testPage(old, 24, 24), false, nil},
		{"whole page kept with its hole", testPage(old, 100, 7000), false, nil},
		{"new page of zeros", make([]byte, BlockSize), false, make([]byte, BlockSize)},
		// PageIsNew looks at pd_upper alone: replay leaves such a page's
		// pd_lsn, whatever the rest holds.
		{"new page with bytes", testPage(old, 0, 0), false, testPage(old, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			le := binary.LittleEndian
			lower, upper := le.Uint16(tt.page[12:]), le.Uint16(tt.page[14:])
			b := BlockRef{HasImage: true, ApplyImage: true, BimgInfo: BkpImageApply, Image: tt.page}
			if tt.hole {
				b.BimgInfo |= BkpImageHasHole
				b.HoleOffset, b.HoleLength = lower, upper-lower
				b.Image = append(bytes.Clone(tt.page[:lower]), tt.page[upper:]...)
			}
			want := tt.want
			if want == nil {
				want = bytes.Clone(tt.page)
				SetPageLSN(want, recEnd)
			}
			got, err := b.RestoredPage(recEnd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("restored page differs from replay's: pd_lsn %v, want %v; first difference at byte %d",
					PageLSN(got), PageLSN(want), firstDiff(got, want))
			}
			if &got[0] == &b.Image[0] {
				t.Error("RestoredPage returned the record's bytes, not a page of its own")
			}
		})
	}
}

// firstDiff is the offset of the first byte where a and b differ, -1 if
// none.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestIsPageImageRecord(t *testing.T) {
	tests := []struct {
		rmid RmgrID
		info uint8
		want bool
	}{
		{RmgrXLOG, XLogFPI, true},
		{RmgrXLOG, XLogFPIForHint, true},
		{RmgrXLOG, XLogFPI | XLRCheckConsistency, true},
		{RmgrXLOG, XLogFPIForHint | XLRSpecialRelUpdate, true},
		{RmgrXLOG, XLogCheckpointOnline, false},
		{RmgrXLOG, XLogNextOID, false},
		{RmgrHeap, XLogFPI, false},
		{RmgrHeap, XLogFPIForHint, false},
	}
	for _, tt := range tests {
		r := Record{Header: XLogRecordHeader{Rmid: tt.rmid, Info: tt.info}}
		if got := r.IsPageImageRecord(); got != tt.want {
			t.Errorf("%v info %#02x: IsPageImageRecord() = %v, want %v", tt.rmid, tt.info, got, tt.want)
		}
	}
}
