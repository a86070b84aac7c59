package pgdata

import (
	"encoding/binary"
	"fmt"
)

// MaxRecordSize bounds xl_tot_len. PostgreSQL 15 cannot hold a record
// whose decoded form exceeds MaxAllocSize (1 GiB - 1); 16 names the limit
// XLogRecordMaxSize, 1020 MiB, which is what we accept.
const MaxRecordSize = 1020 << 20

// inlineBlocks is how many block references a Record holds without an
// allocation of its own; most records reference one to three blocks.
const inlineBlocks = 4

// recordAlloc lets a Record and its first block references share one
// allocation.
type recordAlloc struct {
	rec    Record
	blocks [inlineBlocks]BlockRef
}

// newRecord allocates an empty Record with room for inlineBlocks blocks.
func newRecord() *Record {
	a := &recordAlloc{}
	a.rec.Blocks = a.blocks[:0]
	return &a.rec
}

// ParseRecordHeader decodes the 24-byte XLogRecord header at the start of
// b.
func ParseRecordHeader(b []byte) (XLogRecordHeader, error) {
	if len(b) < XLogRecordHeaderSize {
		return XLogRecordHeader{}, fmt.Errorf("WAL record header: %d bytes, want %d", len(b), XLogRecordHeaderSize)
	}
	return parseRecordHeader(b), nil
}

func parseRecordHeader(b []byte) XLogRecordHeader {
	le := binary.LittleEndian
	return XLogRecordHeader{
		TotLen: le.Uint32(b[0:]),
		Xid:    le.Uint32(b[4:]),
		Prev:   LSN(le.Uint64(b[8:])),
		Info:   b[16],
		Rmid:   RmgrID(b[17]),
		CRC:    le.Uint32(b[20:]),
	}
}

// validRmgrID reports whether id is a resource manager a record may name:
// a built-in one or a custom one, 128-255 (RmgrIdIsValid).
func validRmgrID(id RmgrID) bool { return id.Builtin() || id >= 128 }

// DecodeRecord decodes the whole WAL record raw (header included, exactly
// xl_tot_len bytes) that starts at lsn: it checks the CRC, then splits the
// record into block references, replication origin, top-level xid and
// main data the way DecodeXLogRecord does, checking every length against
// what is left. The Record's slices point into raw.
func DecodeRecord(lsn LSN, raw []byte) (*Record, error) {
	r := newRecord()
	if err := DecodeRecordInto(r, lsn, raw); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeRecordInto is DecodeRecord into an existing Record, reusing its
// Blocks array: a caller decoding many records can avoid allocating.
// EndLSN is left to the caller, who knows the page layout around the
// record.
func DecodeRecordInto(r *Record, lsn LSN, raw []byte) error {
	if len(raw) < XLogRecordHeaderSize {
		return fmt.Errorf("invalid record length at %s: wanted %d, got %d", lsn, XLogRecordHeaderSize, len(raw))
	}
	h := parseRecordHeader(raw)
	if int(h.TotLen) != len(raw) {
		return fmt.Errorf("record at %s: xl_tot_len is %d but the record has %d bytes", lsn, h.TotLen, len(raw))
	}
	if !validRmgrID(h.Rmid) {
		return fmt.Errorf("invalid resource manager ID %d at %s", h.Rmid, lsn)
	}
	if RecordCRC(raw) != h.CRC {
		return fmt.Errorf("incorrect resource manager data checksum in record at %s", lsn)
	}
	*r = Record{LSN: lsn, Header: h, Raw: raw, Blocks: r.Blocks[:0]}
	return decodeBody(r)
}

// decodeBody parses r.Raw after the header into r's blocks, origin,
// top-level xid and main data (DecodeXLogRecord).
func decodeBody(r *Record) error {
	le := binary.LittleEndian
	raw := r.Raw
	p := XLogRecordHeaderSize // next header byte
	// The payload lengths the headers announce, per block in r.Blocks
	// order; the headers end where exactly their total is left.
	var imgLens, dataLens [XLRMaxBlockID + 1]int
	var dataTotal uint64
	var mainLen uint32
	var rel *RelFileNode // the previous block's, for BKPBLOCK_SAME_REL
	maxID := -1

	short := func() error { return fmt.Errorf("record with invalid length at %s", r.LSN) }
headers:
	for uint64(len(raw)-p) > dataTotal {
		id := raw[p]
		p++
		switch {
		case id == XLRBlockIDDataShort:
			if p+1 > len(raw) {
				return short()
			}
			mainLen = uint32(raw[p])
			dataTotal += uint64(mainLen)
			p++
			break headers // by convention the main data header is last
		case id == XLRBlockIDDataLong:
			if p+4 > len(raw) {
				return short()
			}
			mainLen = le.Uint32(raw[p:])
			dataTotal += uint64(mainLen)
			p += 4
			break headers
		case id == XLRBlockIDOrigin:
			if p+2 > len(raw) {
				return short()
			}
			r.Origin = le.Uint16(raw[p:])
			p += 2
		case id == XLRBlockIDTopXid:
			if p+4 > len(raw) {
				return short()
			}
			r.TopXid = le.Uint32(raw[p:])
			p += 4
		case id <= XLRMaxBlockID:
			if int(id) <= maxID {
				return fmt.Errorf("out-of-order block_id %d at %s", id, r.LSN)
			}
			maxID = int(id)
			n := len(r.Blocks)
			r.Blocks = append(r.Blocks, BlockRef{ID: id})
			b := &r.Blocks[n]
			var err error
			p, imgLens[n], dataLens[n], err = decodeBlockHeader(r.LSN, raw, p, b, rel)
			if err != nil {
				return err
			}
			rel = &b.Rel
			dataTotal += uint64(imgLens[n]) + uint64(dataLens[n])
		default:
			return fmt.Errorf("invalid block_id %d at %s", id, r.LSN)
		}
	}
	if uint64(len(raw)-p) != dataTotal {
		return short()
	}
	// The payloads follow in the headers' order: each block's image, then
	// its data, then the main data.
	for i := range r.Blocks {
		b := &r.Blocks[i]
		if b.HasImage {
			n := imgLens[i]
			b.Image = raw[p : p+n : p+n]
			p += n
		}
		if n := dataLens[i]; n > 0 {
			b.Data = raw[p : p+n : p+n]
			p += n
		}
	}
	if mainLen > 0 {
		r.MainData = raw[p : p+int(mainLen) : p+int(mainLen)]
	}
	return nil
}

// decodeBlockHeader parses the XLogRecordBlockHeader at raw[p:] (its id
// already read into b.ID), with its image header and relation, into b.
// prev is the previous block's relation, nil if none, for
// BKPBLOCK_SAME_REL. It returns the position after the header and the
// lengths of the block's image and data payloads.
func decodeBlockHeader(lsn LSN, raw []byte, p int, b *BlockRef, prev *RelFileNode) (next, imgLen, dataLen int, err error) {
	le := binary.LittleEndian
	fail := func(format string, args ...any) (int, int, int, error) {
		return 0, 0, 0, fmt.Errorf(format, args...)
	}
	if p+3 > len(raw) {
		return fail("record with invalid length at %s", lsn)
	}
	flags := raw[p]
	dataLen = int(le.Uint16(raw[p+1:]))
	p += 3
	b.ForkFlags = flags
	b.Fork = ForkNumber(flags & BkpBlockForkMask)
	b.WillInit = flags&BkpBlockWillInit != 0
	b.HasImage = flags&BkpBlockHasImage != 0
	hasData := flags&BkpBlockHasData != 0
	if hasData && dataLen == 0 {
		return fail("BKPBLOCK_HAS_DATA set, but no data included at %s", lsn)
	}
	if !hasData && dataLen != 0 {
		return fail("BKPBLOCK_HAS_DATA not set, but data length is %d at %s", dataLen, lsn)
	}
	if b.HasImage {
		if p+5 > len(raw) {
			return fail("record with invalid length at %s", lsn)
		}
		imgLen = int(le.Uint16(raw[p:]))
		b.HoleOffset = le.Uint16(raw[p+2:])
		b.BimgInfo = raw[p+4]
		p += 5
		b.ApplyImage = b.BimgInfo&BkpImageApply != 0
		hasHole := b.BimgInfo&BkpImageHasHole != 0
		compressed := b.Compressed()
		switch {
		case compressed && hasHole:
			// XLogRecordBlockCompressHeader: the hole's length cannot be
			// inferred from a compressed image's.
			if p+2 > len(raw) {
				return fail("record with invalid length at %s", lsn)
			}
			b.HoleLength = le.Uint16(raw[p:])
			p += 2
		case !compressed && imgLen <= BlockSize:
			b.HoleLength = uint16(BlockSize - imgLen)
		case !compressed:
			// PostgreSQL would wrap BLCKSZ - bimg_len around; no writer
			// produces this.
			return fail("block image length %d exceeds BLCKSZ at %s", imgLen, lsn)
		}
		switch {
		case hasHole && (b.HoleOffset == 0 || b.HoleLength == 0 || imgLen == BlockSize):
			return fail("BKPIMAGE_HAS_HOLE set, but hole offset %d length %d block image length %d at %s",
				b.HoleOffset, b.HoleLength, imgLen, lsn)
		case !hasHole && (b.HoleOffset != 0 || b.HoleLength != 0):
			return fail("BKPIMAGE_HAS_HOLE not set, but hole offset %d length %d at %s", b.HoleOffset, b.HoleLength, lsn)
		case compressed && imgLen == BlockSize:
			return fail("BKPIMAGE_COMPRESSED set, but block image length %d at %s", imgLen, lsn)
		}
		// An uncompressed image without a hole that is not a whole page
		// fails the second check, its hole length being BLCKSZ - bimg_len.
	}
	switch {
	case flags&BkpBlockSameRel == 0:
		if p+12 > len(raw) {
			return fail("record with invalid length at %s", lsn)
		}
		b.Rel = RelFileNode{
			SpcNode: le.Uint32(raw[p:]),
			DbNode:  le.Uint32(raw[p+4:]),
			RelNode: le.Uint32(raw[p+8:]),
		}
		p += 12
	case prev == nil:
		return fail("BKPBLOCK_SAME_REL set but no previous rel at %s", lsn)
	default:
		b.Rel = *prev
	}
	if p+4 > len(raw) {
		return fail("record with invalid length at %s", lsn)
	}
	b.Block = le.Uint32(raw[p:])
	return p + 4, imgLen, dataLen, nil
}

// Compressed reports whether the block's image is compressed, with any of
// the methods (BKPIMAGE_COMPRESSED).
func (b *BlockRef) Compressed() bool {
	return b.BimgInfo&(BkpImageCompressPGLZ|BkpImageCompressLZ4|BkpImageCompressZstd) != 0
}

// Compression names the method the block's image is compressed with, as
// wal_compression spells it: "pglz", "lz4", "zstd", or "none".
func (b *BlockRef) Compression() string {
	switch {
	case b.BimgInfo&BkpImageCompressPGLZ != 0:
		return "pglz"
	case b.BimgInfo&BkpImageCompressLZ4 != 0:
		return "lz4"
	case b.BimgInfo&BkpImageCompressZstd != 0:
		return "zstd"
	}
	return "none"
}

// FPILen is the number of bytes of full-page images in the record, as
// stored (compressed, without holes): the "fpi_len" of XLogRecGetLen.
func (r *Record) FPILen() uint32 {
	var n uint32
	for i := range r.Blocks {
		if r.Blocks[i].HasImage {
			n += uint32(len(r.Blocks[i].Image))
		}
	}
	return n
}

// RecLen is the record's length without its full-page images: what
// pg_waldump prints as the "rec" of "len (rec/tot)" (XLogRecGetLen).
func (r *Record) RecLen() uint32 { return r.Header.TotLen - r.FPILen() }
