package pgdata

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// WALFile is a WAL segment file to write into a data directory's pg_wal.
type WALFile struct {
	Name string // e.g. 000000010000000000000001
	Data []byte // a whole segment
}

// CheckpointRecordSize is xl_tot_len of a checkpoint record: the record
// header, a short main-data header (XLR_BLOCK_ID_DATA_SHORT and a length
// byte) and the CheckPoint struct.
const CheckpointRecordSize = XLogRecordHeaderSize + 2 + CheckPointSize

// CheckpointRecord builds a shutdown checkpoint record (rmgr XLOG, info
// XLOG_CHECKPOINT_SHUTDOWN, no xid) whose xl_prev is prev, with its CRC.
func CheckpointRecord(prev LSN, cp *CheckPoint) []byte {
	raw := make([]byte, CheckpointRecordSize)
	le := binary.LittleEndian
	le.PutUint32(raw[0:], CheckpointRecordSize)
	le.PutUint32(raw[4:], 0) // xl_xid
	le.PutUint64(raw[8:], uint64(prev))
	raw[16] = XLogCheckpointShutdown
	raw[17] = byte(RmgrXLOG)
	raw[XLogRecordHeaderSize] = XLRBlockIDDataShort
	raw[XLogRecordHeaderSize+1] = CheckPointSize
	cp.encodeInto(raw[XLogRecordHeaderSize+2:])
	SetRecordCRC(raw)
	return raw
}

// ShutdownCheckpointWAL is the WAL a basebackup ships so that stock
// PostgreSQL starts at an LSN without replaying anything: a shutdown
// checkpoint record at the first valid record position at or after at,
// in zero-filled segment files whose touched pages have valid headers.
type ShutdownCheckpointWAL struct {
	// RecordLSN is where the checkpoint record starts: at itself, or just
	// after the page header when at is on a page boundary. pg_control's
	// checkPoint and the CheckPoint's Redo must both be RecordLSN.
	RecordLSN LSN
	// EndLSN is where the next record starts (PostgreSQL's EndRecPtr, as
	// Record.EndLSN): the server writes its first new record there.
	EndLSN LSN
	// Files are the segment files holding the record (two when it crosses
	// into the next segment).
	Files []WALFile
}

// BuildShutdownCheckpointWAL writes a shutdown checkpoint record at at
// (which must be 8-byte aligned and not inside a page header). cp.Redo is
// set to the record's position, as a shutdown checkpoint's must be. prev
// is the start of the previous record on the timeline (xl_prev).
//
// The bytes before the record on its page are zeros: PostgreSQL reads the
// checkpoint record directly (ControlFile->checkPoint), never the bytes
// before it. pg_waldump can therefore not start on that page; it can at
// the record.
func BuildShutdownCheckpointWAL(sysID uint64, tli uint32, segSize uint64, at, prev LSN, cp CheckPoint) (*ShutdownCheckpointWAL, error) {
	if !ValidWALSegmentSize(segSize) {
		return nil, fmt.Errorf("checkpoint WAL: invalid segment size %d", segSize)
	}
	if at%8 != 0 {
		return nil, fmt.Errorf("checkpoint WAL: LSN %v is not 8-byte aligned", at)
	}
	w := newWALWriter(sysID, tli, segSize)
	lsn := at
	if off := lsn.PageOffset(); off == 0 {
		lsn += LSN(w.headerSize(lsn))
	} else if off < uint64(w.headerSize(lsn-LSN(off))) {
		return nil, fmt.Errorf("checkpoint WAL: LSN %v is inside a page header", at)
	}
	if prev >= lsn {
		return nil, fmt.Errorf("checkpoint WAL: previous record %v is not before %v", prev, lsn)
	}
	cp.Redo = lsn
	cp.ThisTimeLineID = tli
	if cp.PrevTimeLineID == 0 {
		cp.PrevTimeLineID = tli
	}
	end := w.writeRecord(lsn, CheckpointRecord(prev, &cp))
	return &ShutdownCheckpointWAL{RecordLSN: lsn, EndLSN: end.Align(), Files: w.files()}, nil
}

// walWriter lays WAL records into zero-filled segments, writing a valid
// page header on every page it touches and on the first page of every
// segment it touches.
type walWriter struct {
	sysID   uint64
	tli     uint32
	segSize uint64
	segs    map[uint64][]byte
	// headed records the pages whose header is written, by page LSN.
	headed map[LSN]bool
}

func newWALWriter(sysID uint64, tli uint32, segSize uint64) *walWriter {
	return &walWriter{sysID: sysID, tli: tli, segSize: segSize, segs: map[uint64][]byte{}, headed: map[LSN]bool{}}
}

// headerSize is the size of the header of the page at pageLSN.
func (w *walWriter) headerSize(pageLSN LSN) int {
	if pageLSN.SegmentOffset(w.segSize) == 0 {
		return XLogLongPageHeaderSize
	}
	return XLogShortPageHeaderSize
}

func (w *walWriter) segment(segNo uint64) []byte {
	s, ok := w.segs[segNo]
	if !ok {
		s = make([]byte, w.segSize)
		w.segs[segNo] = s
		w.writeHeader(LSN(segNo*w.segSize), 0)
	}
	return s
}

// writeHeader writes the header of the page at pageLSN, unless it is
// written already; remLen > 0 marks a page that starts with the rest of a
// record.
func (w *walWriter) writeHeader(pageLSN LSN, remLen uint32) {
	if w.headed[pageLSN] {
		return
	}
	w.headed[pageLSN] = true
	h := XLogPageHeader{Magic: XLogPageMagic, TLI: w.tli, PageAddr: pageLSN, RemLen: remLen}
	if remLen > 0 {
		h.Info |= XLPFirstIsContRecord
	}
	if pageLSN.SegmentOffset(w.segSize) == 0 {
		h.Info |= XLPLongHeader
		h.SysID, h.SegSize, h.XLogBlockSize = w.sysID, uint32(w.segSize), XLogBlockSize
	}
	seg := w.segment(pageLSN.SegmentNo(w.segSize))
	copy(seg[pageLSN.SegmentOffset(w.segSize):], h.Encode(nil))
}

// writeRecord writes raw at lsn, splitting it across pages as PostgreSQL
// does, and returns the LSN just after its last byte.
func (w *walWriter) writeRecord(lsn LSN, raw []byte) LSN {
	page := lsn - LSN(lsn.PageOffset())
	w.writeHeader(page, 0)
	for len(raw) > 0 {
		seg := w.segment(lsn.SegmentNo(w.segSize))
		off := lsn.SegmentOffset(w.segSize)
		room := XLogBlockSize - lsn.PageOffset()
		n := copy(seg[off:off+room], raw)
		raw = raw[n:]
		lsn += LSN(n)
		if len(raw) > 0 {
			// lsn is now the start of the next page.
			w.writeHeader(lsn, uint32(len(raw)))
			lsn += LSN(w.headerSize(lsn))
		}
	}
	return lsn
}

func (w *walWriter) files() []WALFile {
	nums := make([]uint64, 0, len(w.segs))
	for n := range w.segs {
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	out := make([]WALFile, len(nums))
	for i, n := range nums {
		out[i] = WALFile{Name: WALFileName(w.tli, n, w.segSize), Data: w.segs[n]}
	}
	return out
}
