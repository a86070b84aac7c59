package pgdata

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"
)

// testBlock is a block reference to encode as XLogInsert would.
type testBlock struct {
	id       uint8
	flags    uint8        // fork and BKPBLOCK_* flags, HAS_DATA/HAS_IMAGE/SAME_REL set from the fields
	rel      *RelFileNode // nil: BKPBLOCK_SAME_REL
	blk      uint32
	data     []byte
	image    []byte
	bimgInfo uint8
	holeOff  uint16
	holeLen  uint16 // written only for a compressed image with a hole
}

// encodeBody encodes block references, origin, top-level xid and main data
// as the body of a record (what follows its header).
func encodeBody(blocks []testBlock, origin uint16, topXid uint32, main []byte) []byte {
	le := binary.LittleEndian
	var hdr, payload []byte
	for _, b := range blocks {
		flags := b.flags
		if len(b.data) > 0 {
			flags |= BkpBlockHasData
		}
		if b.image != nil {
			flags |= BkpBlockHasImage
		}
		if b.rel == nil {
			flags |= BkpBlockSameRel
		}
		hdr = append(hdr, b.id, flags)
		hdr = le.AppendUint16(hdr, uint16(len(b.data)))
		if b.image != nil {
			hdr = le.AppendUint16(hdr, uint16(len(b.image)))
			hdr = le.AppendUint16(hdr, b.holeOff)
			hdr = append(hdr, b.bimgInfo)
			if b.bimgInfo&BkpImageHasHole != 0 && b.bimgInfo&(BkpImageCompressPGLZ|BkpImageCompressLZ4|BkpImageCompressZstd) != 0 {
				hdr = le.AppendUint16(hdr, b.holeLen)
			}
			payload = append(payload, b.image...)
		}
		if b.rel != nil {
			hdr = le.AppendUint32(hdr, b.rel.SpcNode)
			hdr = le.AppendUint32(hdr, b.rel.DbNode)
			hdr = le.AppendUint32(hdr, b.rel.RelNode)
		}
		hdr = le.AppendUint32(hdr, b.blk)
		payload = append(payload, b.data...)
	}
	if origin != 0 {
		hdr = le.AppendUint16(append(hdr, XLRBlockIDOrigin), origin)
	}
	if topXid != 0 {
		hdr = le.AppendUint32(append(hdr, XLRBlockIDTopXid), topXid)
	}
	if main != nil {
		m := mainData(main)
		hdr = append(hdr, m[:len(m)-len(main)]...)
		payload = append(payload, main...)
	}
	return append(hdr, payload...)
}

func TestDecodeRecord(t *testing.T) {
	rel := &RelFileNode{1663, 5, 16384}
	other := &RelFileNode{1664, 0, 1262}
	page := bytes.Repeat([]byte{0xAB}, BlockSize)
	body := encodeBody([]testBlock{
		{id: 0, flags: byte(ForkMain) | BkpBlockWillInit, rel: rel, blk: 7, data: []byte("tuple")},
		{id: 1, flags: byte(ForkVM), blk: 0}, // same relation as block 0
		{id: 3, flags: byte(ForkFSM), rel: other, blk: 2, // ids may skip
			image: page[:6000], bimgInfo: BkpImageHasHole | BkpImageApply, holeOff: 100},
		{id: 4, rel: rel, blk: 9, image: page[:300], bimgInfo: BkpImageHasHole | BkpImageCompressLZ4 | BkpImageApply,
			holeOff: 200, holeLen: 1000, data: []byte("d4")},
		{id: 5, blk: 10, image: page, bimgInfo: 0}, // for wal_consistency_checking: not applied
	}, 3, 1234, bytes.Repeat([]byte("m"), 300))
	raw := makeRecord(RmgrHeap, 0x80, 0x1000, body)
	r, err := DecodeRecord(0x2000, raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.LSN != 0x2000 || r.Header.Prev != 0x1000 || r.Rmgr() != RmgrHeap || r.RmgrInfo() != 0x80 || r.Header.Xid != 700 {
		t.Errorf("header: %+v", r.Header)
	}
	if r.Origin != 3 || r.TopXid != 1234 || string(r.MainData) != strings.Repeat("m", 300) {
		t.Errorf("origin %d, top xid %d, main data %d bytes", r.Origin, r.TopXid, len(r.MainData))
	}
	want := []BlockRef{
		{ID: 0, Rel: *rel, Fork: ForkMain, Block: 7, ForkFlags: BkpBlockWillInit | BkpBlockHasData, WillInit: true, Data: []byte("tuple")},
		{ID: 1, Rel: *rel, Fork: ForkVM, Block: 0, ForkFlags: byte(ForkVM) | BkpBlockSameRel},
		{ID: 3, Rel: *other, Fork: ForkFSM, Block: 2, ForkFlags: byte(ForkFSM) | BkpBlockHasImage, HasImage: true, ApplyImage: true,
			BimgInfo: BkpImageHasHole | BkpImageApply, HoleOffset: 100, HoleLength: BlockSize - 6000, Image: page[:6000]},
		{ID: 4, Rel: *rel, Block: 9, ForkFlags: BkpBlockHasImage | BkpBlockHasData, HasImage: true, ApplyImage: true,
			BimgInfo: BkpImageHasHole | BkpImageCompressLZ4 | BkpImageApply, HoleOffset: 200, HoleLength: 1000, Image: page[:300], Data: []byte("d4")},
		{ID: 5, Rel: *rel, Block: 10, ForkFlags: BkpBlockHasImage | BkpBlockSameRel, HasImage: true, Image: page},
	}
	if len(r.Blocks) != len(want) {
		t.Fatalf("%d blocks, want %d", len(r.Blocks), len(want))
	}
	for i, w := range want {
		g := r.Blocks[i]
		if g.ID != w.ID || g.Rel != w.Rel || g.Fork != w.Fork || g.Block != w.Block || g.ForkFlags != w.ForkFlags ||
			g.WillInit != w.WillInit || g.HasImage != w.HasImage || g.ApplyImage != w.ApplyImage || g.BimgInfo != w.BimgInfo ||
			g.HoleOffset != w.HoleOffset || g.HoleLength != w.HoleLength || !bytes.Equal(g.Image, w.Image) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("block %d:\n got %+v\nwant %+v", i, short(g), short(w))
		}
	}
	if got, want := r.FPILen(), uint32(6000+300+BlockSize); got != want {
		t.Errorf("FPILen = %d, want %d", got, want)
	}
	if got, want := r.RecLen(), uint32(len(raw))-r.FPILen(); got != want {
		t.Errorf("RecLen = %d, want %d", got, want)
	}
	if r.TypeName() != "INSERT+INIT" {
		t.Errorf("TypeName = %q", r.TypeName())
	}
}

// short leaves the byte slices out of a block's printout.
func short(b BlockRef) BlockRef {
	b.Image, b.Data = b.Image[:0:0], b.Data[:0:0]
	return b
}

func TestDecodeRecordErrors(t *testing.T) {
	rel := &RelFileNode{1663, 5, 16384}
	img := make([]byte, 100)
	tests := []struct {
		name   string
		body   []byte
		errHas string
	}{
		{"same rel without a previous one", encodeBody([]testBlock{{id: 0, blk: 1}}, 0, 0, nil), "BKPBLOCK_SAME_REL set but no previous rel"},
		{"block ids out of order", encodeBody([]testBlock{{id: 2, rel: rel}, {id: 1, rel: rel}}, 0, 0, nil), "out-of-order block_id 1"},
		{"repeated block id", encodeBody([]testBlock{{id: 2, rel: rel}, {id: 2, rel: rel}}, 0, 0, nil), "out-of-order block_id 2"},
		{"block id past the maximum", []byte{33, 0, 0, 0}, "invalid block_id 33"},
		{"data flag without data", []byte{0, BkpBlockHasData, 0, 0}, "BKPBLOCK_HAS_DATA set, but no data"},
		{"data without the flag", []byte{0, 0, 5, 0}, "BKPBLOCK_HAS_DATA not set, but data length is 5"},
		{"hole flag, no hole", encodeBody([]testBlock{{id: 0, rel: rel, image: img, bimgInfo: BkpImageHasHole | BkpImageCompressPGLZ}}, 0, 0, nil), "BKPIMAGE_HAS_HOLE set"},
		{"hole without the flag", encodeBody([]testBlock{{id: 0, rel: rel, image: make([]byte, BlockSize), holeOff: 8}}, 0, 0, nil), "BKPIMAGE_HAS_HOLE not set"},
		// PostgreSQL takes the hole to be the rest of the page, then finds the
		// flag missing.
		{"uncompressed image without hole not a page", encodeBody([]testBlock{{id: 0, rel: rel, image: img}}, 0, 0, nil), "BKPIMAGE_HAS_HOLE not set, but hole offset 0 length 8092"},
		{"compressed full page", encodeBody([]testBlock{{id: 0, rel: rel, image: make([]byte, BlockSize), bimgInfo: BkpImageCompressZstd}}, 0, 0, nil), "BKPIMAGE_COMPRESSED set, but block image length 8192"},
		{"image longer than a page", encodeBody([]testBlock{{id: 0, rel: rel, image: make([]byte, BlockSize+8), bimgInfo: BkpImageHasHole, holeOff: 8}}, 0, 0, nil), "exceeds BLCKSZ"},
		{"main data longer than the record", []byte{XLRBlockIDDataShort, 10, 1, 2}, "record with invalid length"},
		{"bytes after the main data", []byte{XLRBlockIDDataShort, 1, 1, 2}, "record with invalid length"},
		{"block data missing", encodeBody([]testBlock{{id: 0, rel: rel, data: []byte("x")}}, 0, 0, nil)[:16], "record with invalid length"},
		{"truncated block header", []byte{0, 0}, "record with invalid length"},
		{"truncated relation", []byte{0, 0, 0, 0, 1, 2}, "record with invalid length"},
		{"truncated long main data header", []byte{XLRBlockIDDataLong, 1}, "record with invalid length"},
		{"truncated origin", []byte{XLRBlockIDOrigin}, "record with invalid length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRecord(0x2000, makeRecord(RmgrHeap, 0, 0x1000, tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("DecodeRecord error = %v, want one containing %q", err, tt.errHas)
			}
		})
	}

	raw := makeRecord(RmgrHeap, 0, 0x1000, mainData([]byte("abc")))
	for _, tt := range []struct {
		name   string
		raw    []byte
		errHas string
	}{
		{"shorter than a header", raw[:20], "invalid record length at 0/2000: wanted 24, got 20"},
		{"xl_tot_len not the length", append(append([]byte{}, raw...), 0), "xl_tot_len is 29"},
		{"bad CRC", append(append([]byte{}, raw[:len(raw)-1]...), 'x'), "incorrect resource manager data checksum in record at 0/2000"},
		{"bad rmgr", func() []byte { b := append([]byte{}, raw...); b[17] = 99; return b }(), "invalid resource manager ID 99"},
	} {
		if _, err := DecodeRecord(0x2000, tt.raw); err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: DecodeRecord error = %v, want one containing %q", tt.name, err, tt.errHas)
		}
	}
}

func TestRecordTypeName(t *testing.T) {
	tests := []struct {
		rmid RmgrID
		info uint8
		want string
	}{
		{RmgrHeap, 0x00, "INSERT"},
		{RmgrHeap, 0x80, "INSERT+INIT"},
		{RmgrHeap, 0xC0 | XLRSpecialRelUpdate, "HOT_UPDATE+INIT"},
		{RmgrHeap2, 0xD0, "MULTI_INSERT+INIT"},
		{RmgrTransaction, 0x80, "COMMIT"}, // XLOG_XACT_HAS_INFO is not part of the kind
		{RmgrTransaction, 0x10, "PREPARE"},
		{RmgrXLOG, XLogFPIForHint, "FPI_FOR_HINT"},
		{RmgrBtree, 0xE0, "META_CLEANUP"},
		{RmgrGeneric, 0x00, "Generic"},
		{RmgrCommitTs, 0x10, "TRUNCATE"},
		{RmgrCommitTs, 0x11, "UNKNOWN (10)"}, // commit_ts_identify compares the whole xl_info
		{RmgrXLOG, 0xC0, "UNKNOWN (c0)"},
		{RmgrID(130), 0x20, "UNKNOWN (20)"},
	}
	for _, tt := range tests {
		if got := RecordTypeName(tt.rmid, tt.info); got != tt.want {
			t.Errorf("RecordTypeName(%v, %#x) = %q, want %q", tt.rmid, tt.info, got, tt.want)
		}
	}
}

// BenchmarkWALDecoder measures decoding the lz4 sample, fed as a WAL
// receiver would, in 128 kB messages.
func BenchmarkWALDecoder(b *testing.B) {
	t := &testing.T{}
	dir := filepath.Join("testdata", "wal", "lz4")
	recs, _ := readGolden(t, dir)
	start := recs[0].lsn - LSN(recs[0].lsn.PageOffset())
	stream, segSize := sampleStream(t, dir, start)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		d := NewWALDecoder(start, segSize)
		for s := stream; len(s) > 0; {
			n := min(len(s), 128<<10)
			d.Feed(s[:n])
			s = s[n:]
			for {
				if _, err := d.Next(); err != nil {
					break
				}
			}
		}
	}
}
