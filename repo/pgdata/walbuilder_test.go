package pgdata

import "encoding/binary"

// walBuilder lays out WAL records in pages the way XLogInsert does, for
// cases the real samples lack: records placed at exact page positions, an
// abandoned record followed by XLP_FIRST_IS_OVERWRITE_CONTRECORD.
type walBuilder struct {
	segSize uint64
	start   LSN    // a page boundary
	buf     []byte // the WAL from start
	prev    LSN    // the last record written
	// nextFlags are extra xlp_info flags for the next page header.
	nextFlags uint16
}

func newWALBuilder(start LSN, segSize uint64) *walBuilder {
	return &walBuilder{segSize: segSize, start: start, prev: start - 0x100}
}

func (w *walBuilder) pos() LSN { return w.start + LSN(len(w.buf)) }

// record appends a record of rmgr rmid with xl_info info whose body (what
// follows the 24-byte header) is body, and returns its LSN.
func (w *walBuilder) record(rmid RmgrID, info uint8, body []byte) LSN {
	raw := makeRecord(rmid, info, w.prev, body)
	w.align()
	if w.pos().PageOffset() == 0 {
		w.pageHeader(0)
	}
	lsn := w.pos()
	w.writeRecord(raw, len(raw))
	w.prev = lsn
	return lsn
}

// abandon writes the part of a record of body that fits on the current
// page, and marks the next page as overwriting its missing rest, as
// PostgreSQL does after recovery stopped at a torn record.
func (w *walBuilder) abandon(body []byte) LSN {
	raw := makeRecord(RmgrLogicalMessage, 0, w.prev, body)
	w.align()
	lsn := w.pos()
	n := XLogBlockSize - int(lsn.PageOffset())
	w.writeRecord(raw[:n], len(raw))
	w.nextFlags = XLPFirstIsOverwriteContRecord
	return lsn
}

// writeRecord writes raw, the first len(raw) of total bytes of a record,
// with continuation page headers.
func (w *walBuilder) writeRecord(raw []byte, total int) {
	done := 0
	for done < len(raw) {
		if w.pos().PageOffset() == 0 {
			w.pageHeader(uint32(total - done))
		}
		n := XLogBlockSize - int(w.pos().PageOffset())
		if n > len(raw)-done {
			n = len(raw) - done
		}
		w.buf = append(w.buf, raw[done:done+n]...)
		done += n
	}
}

// pageHeader writes the header of the page at pos; rem > 0 says a record
// continues on it.
func (w *walBuilder) pageHeader(rem uint32) {
	h := XLogPageHeader{Magic: XLogPageMagic, TLI: 1, PageAddr: w.pos(), Info: w.nextFlags, RemLen: rem}
	w.nextFlags = 0
	if rem > 0 {
		h.Info |= XLPFirstIsContRecord
	}
	if w.pos().SegmentOffset(w.segSize) == 0 {
		h.Info |= XLPLongHeader
		h.SysID, h.SegSize, h.XLogBlockSize = 42, uint32(w.segSize), XLogBlockSize
	}
	w.buf = h.Encode(w.buf)
}

// align pads with zeros to the next multiple of 8.
func (w *walBuilder) align() {
	for w.pos()%8 != 0 {
		w.buf = append(w.buf, 0)
	}
}

// fillPage appends a record that ends exactly at the end of the page, so
// the next record starts right after the next page's header. It needs at
// least 32 bytes left on the page, and not 257 or 258.
func (w *walBuilder) fillPage() LSN {
	w.align()
	n := XLogBlockSize - int(w.pos().PageOffset()) - XLogRecordHeaderSize - 2
	if n >= 256 {
		n -= 3 // the long main data header
	}
	return w.record(RmgrXLOG, XLogNoop, mainData(make([]byte, n)))
}

// makeRecord builds a whole record with a valid CRC.
func makeRecord(rmid RmgrID, info uint8, prev LSN, body []byte) []byte {
	raw := make([]byte, XLogRecordHeaderSize, XLogRecordHeaderSize+len(body))
	raw = append(raw, body...)
	le := binary.LittleEndian
	le.PutUint32(raw[0:], uint32(len(raw)))
	le.PutUint32(raw[4:], 700)
	le.PutUint64(raw[8:], uint64(prev))
	raw[16], raw[17] = info, byte(rmid)
	SetRecordCRC(raw)
	return raw
}

// mainData is a record body of main data only.
func mainData(b []byte) []byte {
	if len(b) < 256 {
		return append([]byte{XLRBlockIDDataShort, byte(len(b))}, b...)
	}
	out := []byte{XLRBlockIDDataLong, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}
