package pgdata

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNeedMoreWAL is what WALDecoder.Next returns when the bytes fed so far
// end before the next record does: feed more and call Next again.
var ErrNeedMoreWAL = errors.New("need more WAL")

// EndOfWALError says that the WAL stops being valid at LSN: where the
// next record would have started (the end of the last good record, or the
// start position if there was none). Reason is PostgreSQL's own message
// for the problem, as pg_waldump prints it, e.g. "invalid record length at
// 0/1A2B3C8: wanted 24, got 0".
//
// It is how PostgreSQL's xlogreader finds the end of WAL during recovery:
// a zero or short xl_tot_len, a bad page header or page address, an
// xl_prev that does not point at the previous record, or a CRC mismatch.
type EndOfWALError struct {
	LSN    LSN
	Reason string
}

func (e *EndOfWALError) Error() string { return e.Reason }

// feedChunk is the size of the buffers WALDecoder allocates for fed
// bytes, unless one Feed (with the bytes not consumed yet) needs more.
// Bytes fed are copied once into the current buffer; a new one starts
// when it is full, with only the unconsumed rest moved, which is short
// when the caller takes the records after each Feed (a caller that lets
// it grow still gets buffers of twice what it holds, so each byte moves
// a bounded number of times). With 64 KiB buffers and the records taken
// only every few MiB, the page server's receiver copied and zeroed every
// byte of a bulk load about twice more: 30% of its CPU.
const feedChunk = 1 << 20

// WALDecoder decodes a stream of WAL bytes into records, as they arrive:
// Feed appends bytes, Next returns the next complete record or
// ErrNeedMoreWAL. It reads page headers between the records, reassembles
// records that span pages and segments, skips the rest of the segment
// after an XLOG_SWITCH record, and reports the end of valid WAL as an
// *EndOfWALError, after which it returns that same error forever.
//
// The stream may start at any record boundary: at a page boundary it
// begins with that page's header; anywhere else it begins with the
// record itself (the header of a page the stream starts in the middle of
// is not part of it). A start that is not 8-aligned, such as the
// unaligned end of the previous record, is fine: the padding is skipped.
//
// A Record's Raw, and the slices into it, point into the decoder's
// buffers, which are never overwritten: a Record stays valid after later
// calls, but holding one keeps the buffer it was read from (1 MiB, or
// twice what a larger Feed left unconsumed) in memory. A WALDecoder is not safe for
// concurrent use.
type WALDecoder struct {
	segSize uint64

	// buf[off:] are the fed bytes not consumed yet; buf[off] is at LSN pos.
	// Bytes in buf are never modified once fed (records point at them):
	// when buf is full, Feed moves the unconsumed rest to a new array.
	buf []byte
	off int
	pos LSN

	// next is where the next record starts: pos itself, or a little past
	// it (padding, or the rest of a segment after XLOG_SWITCH), or the
	// start of the page whose header pos is at.
	next LSN
	// prev is the start of the last record returned; for the first one
	// only xl_prev < its LSN can be checked.
	prev     LSN
	havePrev bool

	asm assembly // a record spanning pages, while it is read

	tli        uint32 // timeline of the latest page header (0 before one)
	latestPage LSN    // address of the latest page header
	sysID      uint64 // system identifier of the long headers, if known
	haveSysID  bool

	err error // the sticky *EndOfWALError
}

// assembly is a record being reassembled from the pages it spans.
type assembly struct {
	active    bool
	lsn       LSN
	totLen    uint32
	first     []byte // its fragment on the first page, until raw exists
	raw       []byte // the record; allocated when the next page vouches for totLen
	got       uint32 // bytes of the record read so far
	gotHeader bool   // its header has been validated
}

// NewWALDecoder returns a decoder for WAL with segments of segSize bytes,
// whose stream starts at start, a record boundary.
func NewWALDecoder(start LSN, segSize uint64) *WALDecoder {
	d := &WALDecoder{segSize: segSize, pos: start, next: start.Align()}
	if !ValidWALSegmentSize(segSize) {
		d.fail(start, fmt.Sprintf("invalid WAL segment size %d: want a power of two from 1 MiB to 1 GiB", segSize))
		return d
	}
	if off := start.PageOffset(); off != 0 {
		min := uint64(XLogShortPageHeaderSize)
		if start.SegmentOffset(segSize) < XLogBlockSize {
			min = XLogLongPageHeaderSize
		}
		if off < min {
			d.fail(start, fmt.Sprintf("invalid record offset at %s", start))
		}
	}
	return d
}

// ExpectSystemID makes the decoder reject segments whose long page header
// carries another system identifier than id (pg_control's).
func (d *WALDecoder) ExpectSystemID(id uint64) { d.sysID, d.haveSysID = id, true }

// FeedLSN is the LSN of the next byte Feed expects.
func (d *WALDecoder) FeedLSN() LSN { return d.pos + LSN(len(d.buf)-d.off) }

// NextRecordLSN is where the record Next is working on starts: the end of
// the last record returned (aligned, as PostgreSQL's EndRecPtr), or the
// start position.
func (d *WALDecoder) NextRecordLSN() LSN {
	if d.asm.active {
		return d.asm.lsn
	}
	return d.next
}

// Timeline is the timeline of the latest page header read, 0 before any.
func (d *WALDecoder) Timeline() uint32 { return d.tli }

// Feed appends b, the WAL bytes that continue the stream at FeedLSN. The
// decoder copies b; the caller may reuse it.
func (d *WALDecoder) Feed(b []byte) {
	if len(b) == 0 {
		return
	}
	if cap(d.buf)-len(d.buf) < len(b) {
		rest := d.buf[d.off:]
		n := max(feedChunk, 2*(len(rest)+len(b)))
		nb := make([]byte, len(rest), n)
		copy(nb, rest)
		d.buf, d.off = nb, 0
	}
	d.buf = append(d.buf, b...)
}

// avail is the number of fed bytes not consumed yet.
func (d *WALDecoder) avail() int { return len(d.buf) - d.off }

// consume moves past n fed bytes.
func (d *WALDecoder) consume(n int) {
	d.off += n
	d.pos += LSN(n)
}

// fail records the end of valid WAL at lsn and returns it.
func (d *WALDecoder) fail(lsn LSN, reason string) error {
	d.err = &EndOfWALError{LSN: lsn, Reason: reason}
	d.asm = assembly{}
	return d.err
}

// Next returns the next record, ErrNeedMoreWAL if the bytes fed so far do
// not complete it, or an *EndOfWALError where the valid WAL ends.
func (d *WALDecoder) Next() (*Record, error) {
	for d.err == nil {
		switch {
		case !d.asm.active && d.pos < d.next:
			// Alignment padding, or the rest of a segment after
			// XLOG_SWITCH, whose pages nobody reads.
			n := d.next - d.pos
			if a := LSN(d.avail()); a < n {
				n = a
			}
			if n == 0 {
				return nil, ErrNeedMoreWAL
			}
			d.consume(int(n))
		case d.pos.PageOffset() == 0:
			if err := d.readPageHeader(); err != nil {
				return nil, err
			}
		default:
			// Both return nil, nil when the record goes on on the next
			// page.
			read := d.startRecord
			if d.asm.active {
				read = d.continueRecord
			}
			if rec, err := read(); rec != nil || err != nil {
				return rec, err
			}
		}
	}
	return nil, d.err
}

// readPageHeader reads and validates the header of the page at pos
// (ReadPageInternal, XLogReaderValidatePageHeader) and checks that it
// agrees with the record being reassembled, if any.
func (d *WALDecoder) readPageHeader() error {
	if d.avail() < XLogShortPageHeaderSize {
		return ErrNeedMoreWAL
	}
	b := d.buf[d.off:]
	size := pageHeaderSizeOf(b)
	if len(b) < size {
		return ErrNeedMoreWAL
	}
	h, _ := ParseXLogPageHeader(b) // cannot fail: the bytes are there
	at := d.NextRecordLSN()
	tli := d.tli
	if tli == 0 {
		tli = h.TLI
	}
	if err := h.Check(d.pos, d.segSize, tli); err != nil {
		return d.fail(at, err.Error())
	}
	if h.IsLong() {
		if d.haveSysID && h.SysID != d.sysID {
			return d.fail(at, fmt.Sprintf("WAL file is from different database system: WAL file database system identifier is %d, pg_control database system identifier is %d", h.SysID, d.sysID))
		}
		d.sysID, d.haveSysID = h.SysID, true
	}
	if d.pos > d.latestPage && h.TLI < d.tli {
		return d.fail(at, fmt.Sprintf("out-of-sequence timeline ID %d (after %d) in log segment %s, offset %d",
			h.TLI, d.tli, WALFileName(d.tli, d.pos.SegmentNo(d.segSize), d.segSize), d.pos.SegmentOffset(d.segSize)))
	}
	d.latestPage, d.tli = d.pos, h.TLI
	d.consume(size)

	a := &d.asm
	switch {
	case !a.active:
		// A record starts right after the header.
		d.next = d.pos
		if h.Info&XLPFirstIsContRecord != 0 {
			return d.fail(d.pos, fmt.Sprintf("contrecord is requested by %s", d.pos))
		}
	case h.Info&XLPFirstIsOverwriteContRecord != 0:
		// The rest of the record was never written; the WAL goes on
		// with an XLOG_OVERWRITE_CONTRECORD record here, whose xl_prev
		// is the record before the abandoned one.
		*a = assembly{}
		d.next = d.pos
	case h.Info&XLPFirstIsContRecord == 0:
		return d.fail(a.lsn, fmt.Sprintf("there is no contrecord flag at %s", a.lsn))
	case h.RemLen == 0 || h.RemLen != a.totLen-a.got:
		return d.fail(a.lsn, fmt.Sprintf("invalid contrecord length %d (expected %d) at %s", h.RemLen, a.totLen-a.got, a.lsn))
	case a.raw == nil:
		// The page vouches for xl_tot_len; now it is safe to allocate.
		a.raw = make([]byte, a.totLen)
		copy(a.raw, a.first)
		a.first = nil
	}
	return nil
}

// startRecord reads the record that starts at pos, not at a page start.
func (d *WALDecoder) startRecord() (*Record, error) {
	lsn := d.pos
	pageLeft := XLogBlockSize - int(lsn.PageOffset())
	if d.avail() < 4 {
		// xl_tot_len is on this page: records are 8-aligned.
		return nil, ErrNeedMoreWAL
	}
	b := d.buf[d.off:]
	totLen := binary.LittleEndian.Uint32(b)
	gotHeader := false
	if pageLeft >= XLogRecordHeaderSize {
		if len(b) < XLogRecordHeaderSize {
			return nil, ErrNeedMoreWAL
		}
		if err := d.checkRecordHeader(lsn, b); err != nil {
			return nil, err
		}
		gotHeader = true
	} else if totLen < XLogRecordHeaderSize {
		return nil, d.fail(lsn, fmt.Sprintf("invalid record length at %s: wanted %d, got %d", lsn, XLogRecordHeaderSize, totLen))
	}
	if totLen > MaxRecordSize {
		return nil, d.fail(lsn, fmt.Sprintf("record length %d at %s too long", totLen, lsn))
	}
	if int(totLen) <= pageLeft {
		if len(b) < int(totLen) {
			return nil, ErrNeedMoreWAL
		}
		raw := b[:totLen:totLen]
		d.consume(int(totLen))
		return d.finishRecord(lsn, raw, (lsn + LSN(totLen)).Align())
	}
	// The record goes on on the next page: keep its first fragment until
	// that page's header confirms the length.
	if len(b) < pageLeft {
		return nil, ErrNeedMoreWAL
	}
	d.asm = assembly{
		active:    true,
		lsn:       lsn,
		totLen:    totLen,
		first:     b[:pageLeft:pageLeft],
		got:       uint32(pageLeft),
		gotHeader: gotHeader,
	}
	d.consume(pageLeft)
	return nil, nil
}

// continueRecord copies the part of the record being reassembled that is
// on the current page (after its header), and finishes the record when
// it is complete. It returns nil, nil when the record goes on on the next
// page.
func (d *WALDecoder) continueRecord() (*Record, error) {
	a := &d.asm
	n := int(a.totLen - a.got)
	if pageLeft := XLogBlockSize - int(d.pos.PageOffset()); n > pageLeft {
		n = pageLeft
	}
	m := n
	if av := d.avail(); m > av {
		m = av
	}
	copy(a.raw[a.got:], d.buf[d.off:d.off+m])
	a.got += uint32(m)
	d.consume(m)
	if !a.gotHeader && a.got >= XLogRecordHeaderSize {
		if err := d.checkRecordHeader(a.lsn, a.raw); err != nil {
			return nil, err
		}
		a.gotHeader = true
	}
	if m < n {
		return nil, ErrNeedMoreWAL
	}
	if a.got < a.totLen {
		return nil, nil
	}
	lsn, raw := a.lsn, a.raw
	*a = assembly{}
	return d.finishRecord(lsn, raw, d.pos.Align())
}

// checkRecordHeader validates the header at the start of b of the record
// at lsn, before its length is trusted (ValidXLogRecordHeader).
func (d *WALDecoder) checkRecordHeader(lsn LSN, b []byte) error {
	h := parseRecordHeader(b)
	switch {
	case h.TotLen < XLogRecordHeaderSize:
		return d.fail(lsn, fmt.Sprintf("invalid record length at %s: wanted %d, got %d", lsn, XLogRecordHeaderSize, h.TotLen))
	case !validRmgrID(h.Rmid):
		return d.fail(lsn, fmt.Sprintf("invalid resource manager ID %d at %s", h.Rmid, lsn))
	case d.havePrev && h.Prev != d.prev, !d.havePrev && h.Prev >= lsn:
		return d.fail(lsn, fmt.Sprintf("record with incorrect prev-link %s at %s", h.Prev, lsn))
	}
	return nil
}

// finishRecord checks the CRC of a complete record and decodes it; next is
// where the following record starts.
func (d *WALDecoder) finishRecord(lsn LSN, raw []byte, next LSN) (*Record, error) {
	rec := newRecord()
	if err := DecodeRecordInto(rec, lsn, raw); err != nil {
		return nil, d.fail(lsn, err.Error())
	}
	if rec.Header.Rmid == RmgrXLOG && rec.RmgrInfo() == XLogSwitch {
		// The rest of the segment is unused (XLogDecodeNextRecord).
		next = LSN((uint64(next) + d.segSize - 1) / d.segSize * d.segSize)
	}
	rec.EndLSN = next
	d.next = next
	d.prev, d.havePrev = lsn, true
	return rec, nil
}
