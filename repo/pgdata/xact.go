package pgdata

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Record types of the Transaction resource manager (access/xact.h): the
// XLOG_XACT_* values of xl_info & XLogXactOpMask.
const (
	XLogXactCommit         uint8 = 0x00
	XLogXactPrepare        uint8 = 0x10
	XLogXactAbort          uint8 = 0x20
	XLogXactCommitPrepared uint8 = 0x30
	XLogXactAbortPrepared  uint8 = 0x40
	XLogXactAssignment     uint8 = 0x50
	XLogXactInvalidations  uint8 = 0x60
	XLogXactOpMask         uint8 = 0x70
	// XLogXactHasInfo in xl_info says an xl_xact_xinfo follows xact_time.
	XLogXactHasInfo uint8 = 0x80
)

// Flags of xl_xact_xinfo.xinfo: which parts a commit or abort record has.
const (
	XactXinfoHasDBInfo       uint32 = 1 << 0
	XactXinfoHasSubxacts     uint32 = 1 << 1
	XactXinfoHasRelfilenodes uint32 = 1 << 2
	XactXinfoHasInvals       uint32 = 1 << 3
	XactXinfoHasTwoPhase     uint32 = 1 << 4
	XactXinfoHasOrigin       uint32 = 1 << 5
	XactXinfoHasAELocks      uint32 = 1 << 6
	XactXinfoHasGID          uint32 = 1 << 7
	XactXinfoHasDroppedStats uint32 = 1 << 8
)

// Sizes of the parts of transaction records.
const (
	relFileNodeSize      = 12 // RelFileNode
	xactStatsItemSize    = 12 // xl_xact_stats_item
	sharedInvalMsgSize   = 16 // SharedInvalidationMessage
	xactOriginSize       = 16 // xl_xact_origin
	xactPrepareHeaderLen = 72 // MAXALIGN(sizeof(xl_xact_prepare))
)

// XactEnd is a parsed commit or abort record, plain or of a prepared
// transaction (xl_xact_parsed_commit / xl_xact_parsed_abort, filled as
// ParseCommitRecord and ParseAbortRecord in xactdesc.c do).
type XactEnd struct {
	// Commit is set for a commit, clear for an abort.
	Commit bool
	// Prepared is set for COMMIT PREPARED / ROLLBACK PREPARED.
	Prepared bool
	// Xid is the transaction that ends: the record's xl_xid, or for a
	// prepared transaction the xid in the record (xl_xact_twophase). For
	// the abort of a subtransaction it is the subtransaction.
	Xid uint32
	// Subxacts are the ended transaction's subtransactions that end with
	// it (committed children at commit, all children at abort).
	Subxacts []uint32
	// XactTime is the commit or abort time (TimestampTz).
	XactTime int64
	Xinfo    uint32
	// DbID and TsID are the database and its tablespace (XINFO_HAS_DBINFO).
	DbID, TsID uint32
	// Rels are the relations whose files are dropped by this commit or
	// abort.
	Rels []RelFileNode
	// GID is a prepared transaction's global id (XINFO_HAS_GID).
	GID string
	// OriginLSN and OriginTime come from a replication origin
	// (XINFO_HAS_ORIGIN).
	OriginLSN  LSN
	OriginTime int64
}

// Status is the CLOG status the record gives to Xid and Subxacts.
func (x *XactEnd) Status() XidStatus {
	if x.Commit {
		return XidCommitted
	}
	return XidAborted
}

// Xids returns Xid followed by Subxacts: every transaction the record
// ends.
func (x *XactEnd) Xids() []uint32 {
	return append([]uint32{x.Xid}, x.Subxacts...)
}

// ParseXactEnd parses a Transaction record that ends a transaction:
// commit, abort, commit prepared or abort prepared. Other record types
// and malformed data are errors.
func ParseXactEnd(r *Record) (*XactEnd, error) {
	if r.Rmgr() != RmgrTransaction {
		return nil, fmt.Errorf("record at %v is a %v record, not a transaction's end", r.LSN, r.Rmgr())
	}
	info := r.Header.Info
	x := &XactEnd{Xid: r.Header.Xid}
	switch info & XLogXactOpMask {
	case XLogXactCommit:
		x.Commit = true
	case XLogXactCommitPrepared:
		x.Commit, x.Prepared = true, true
	case XLogXactAbort:
	case XLogXactAbortPrepared:
		x.Prepared = true
	default:
		return nil, fmt.Errorf("transaction record at %v (info %#02x) is not a commit or abort", r.LSN, info)
	}
	if err := x.parse(info, r.MainData); err != nil {
		return nil, fmt.Errorf("transaction record at %v: %w", r.LSN, err)
	}
	return x, nil
}

func (x *XactEnd) parse(info uint8, data []byte) error {
	d := xactReader{b: data}
	x.XactTime = int64(d.u64("xact_time"))
	if info&XLogXactHasInfo != 0 {
		x.Xinfo = d.u32("xinfo")
	}
	if x.Xinfo&XactXinfoHasDBInfo != 0 {
		x.DbID, x.TsID = d.u32("dbId"), d.u32("tsId")
	}
	if x.Xinfo&XactXinfoHasSubxacts != 0 {
		x.Subxacts = d.xids("subxacts")
	}
	if x.Xinfo&XactXinfoHasRelfilenodes != 0 {
		x.Rels = d.relFileNodes("relfilenodes")
	}
	if x.Xinfo&XactXinfoHasDroppedStats != 0 {
		d.skipArray("dropped stats", xactStatsItemSize)
	}
	// Abort records never carry invalidation messages (xl_xact_abort).
	if x.Commit && x.Xinfo&XactXinfoHasInvals != 0 {
		d.skipArray("invalidation messages", sharedInvalMsgSize)
	}
	if x.Xinfo&XactXinfoHasTwoPhase != 0 {
		twoPhaseXid := d.u32("twophase xid")
		if x.Prepared {
			x.Xid = twoPhaseXid
		}
		if x.Xinfo&XactXinfoHasGID != 0 {
			x.GID = d.cstring("gid")
		}
	} else if x.Prepared && d.err == nil {
		return fmt.Errorf("prepared transaction's end without XACT_XINFO_HAS_TWOPHASE")
	}
	if x.Xinfo&XactXinfoHasOrigin != 0 {
		x.OriginLSN = LSN(d.u64("origin lsn"))
		x.OriginTime = int64(d.u64("origin timestamp"))
	}
	return d.err
}

// XactPrepare is a parsed PREPARE TRANSACTION record: the two-phase state
// (xl_xact_prepare, TwoPhaseFileHeader) and what follows it, as
// ParsePrepareRecord in xactdesc.c reads it. The record's main data is
// also the content of the pg_twophase file, without its CRC.
type XactPrepare struct {
	Xid        uint32
	Database   uint32
	PreparedAt int64
	Owner      uint32
	Subxacts   []uint32
	// CommitRels and AbortRels are dropped at COMMIT PREPARED and
	// ROLLBACK PREPARED respectively.
	CommitRels, AbortRels []RelFileNode
	GID                   string
	OriginLSN             LSN
	OriginTime            int64
}

// twoPhaseMagic is TWOPHASE_MAGIC of twophase.c, the format of a 15
// two-phase state.
const twoPhaseMagic = 0x57F94534

// ParseXactPrepare parses an XLOG_XACT_PREPARE record.
func ParseXactPrepare(r *Record) (*XactPrepare, error) {
	if r.Rmgr() != RmgrTransaction || r.Header.Info&XLogXactOpMask != XLogXactPrepare {
		return nil, fmt.Errorf("record at %v (%v, info %#02x) is not a PREPARE TRANSACTION", r.LSN, r.Rmgr(), r.Header.Info)
	}
	p, err := parseXactPrepare(r.MainData)
	if err != nil {
		return nil, fmt.Errorf("prepare record at %v: %w", r.LSN, err)
	}
	return p, nil
}

func parseXactPrepare(data []byte) (*XactPrepare, error) {
	if len(data) < xactPrepareHeaderLen {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte two-phase header", len(data), xactPrepareHeaderLen)
	}
	le := binary.LittleEndian
	if m := le.Uint32(data[0:]); m != twoPhaseMagic {
		return nil, fmt.Errorf("two-phase magic %#x, want %#x", m, twoPhaseMagic)
	}
	p := &XactPrepare{
		Xid:        le.Uint32(data[8:]),
		Database:   le.Uint32(data[12:]),
		PreparedAt: int64(le.Uint64(data[16:])),
		Owner:      le.Uint32(data[24:]),
		OriginLSN:  LSN(le.Uint64(data[56:])),
		OriginTime: int64(le.Uint64(data[64:])),
	}
	var counts [6]int32 // nsubxacts, ncommitrels, nabortrels, ncommitstats, nabortstats, ninvalmsgs
	for i := range counts {
		counts[i] = int32(le.Uint32(data[28+4*i:]))
		if counts[i] < 0 {
			return nil, fmt.Errorf("negative count %d in the two-phase header", counts[i])
		}
	}
	gidLen := int(le.Uint16(data[54:]))
	d := xactReader{b: data[xactPrepareHeaderLen:]}
	// gidlen counts the terminating NUL.
	if gid := d.bytes("gid", maxAlign(gidLen)); gid != nil {
		gid = gid[:gidLen]
		if i := bytes.IndexByte(gid, 0); i >= 0 {
			gid = gid[:i]
		}
		p.GID = string(gid)
	}
	p.Subxacts = d.alignedXids("subxacts", int(counts[0]))
	p.CommitRels = d.alignedRelFileNodes("commit rels", int(counts[1]))
	p.AbortRels = d.alignedRelFileNodes("abort rels", int(counts[2]))
	d.bytes("commit stats", maxAlign(int(counts[3])*xactStatsItemSize))
	d.bytes("abort stats", maxAlign(int(counts[4])*xactStatsItemSize))
	d.bytes("invalidation messages", maxAlign(int(counts[5])*sharedInvalMsgSize))
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

// maxAlign rounds n up to PostgreSQL's MAXALIGN (8 on the platforms zenith
// runs on).
func maxAlign(n int) int { return (n + 7) &^ 7 }

// xactReader reads the little-endian parts of a transaction record,
// remembering the first error (which names the part that was cut short).
type xactReader struct {
	b   []byte
	err error
}

func (d *xactReader) bytes(what string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%s: need %d bytes, %d left", what, n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *xactReader) u32(what string) uint32 {
	if b := d.bytes(what, 4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *xactReader) u64(what string) uint64 {
	if b := d.bytes(what, 8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// count reads an int count of elemSize-byte elements and checks they fit.
func (d *xactReader) count(what string, elemSize int) int {
	n := int32(d.u32(what + " count"))
	if d.err != nil {
		return 0
	}
	if n < 0 || int(n)*elemSize > len(d.b) {
		d.err = fmt.Errorf("%s: count %d does not fit in the %d bytes left", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *xactReader) skipArray(what string, elemSize int) {
	d.bytes(what, d.count(what, elemSize)*elemSize)
}

func (d *xactReader) xids(what string) []uint32 {
	return decodeXids(d.bytes(what, 4*d.count(what, 4)))
}

func (d *xactReader) relFileNodes(what string) []RelFileNode {
	return decodeRelFileNodes(d.bytes(what, relFileNodeSize*d.count(what, relFileNodeSize)))
}

func (d *xactReader) alignedXids(what string, n int) []uint32 {
	b := d.bytes(what, maxAlign(4*n))
	if b == nil {
		return nil
	}
	return decodeXids(b[:4*n])
}

func (d *xactReader) alignedRelFileNodes(what string, n int) []RelFileNode {
	b := d.bytes(what, maxAlign(relFileNodeSize*n))
	if b == nil {
		return nil
	}
	return decodeRelFileNodes(b[:relFileNodeSize*n])
}

// cstring reads a NUL-terminated string.
func (d *xactReader) cstring(what string) string {
	if d.err != nil {
		return ""
	}
	i := bytes.IndexByte(d.b, 0)
	if i < 0 {
		d.err = fmt.Errorf("%s: no terminating NUL in the %d bytes left", what, len(d.b))
		return ""
	}
	s := string(d.b[:i])
	d.b = d.b[i+1:]
	return s
}

func decodeXids(b []byte) []uint32 {
	if len(b) == 0 {
		return nil
	}
	xids := make([]uint32, len(b)/4)
	for i := range xids {
		xids[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return xids
}

func decodeRelFileNodes(b []byte) []RelFileNode {
	if len(b) == 0 {
		return nil
	}
	rels := make([]RelFileNode, len(b)/relFileNodeSize)
	for i := range rels {
		rels[i] = parseRelFileNode(b[relFileNodeSize*i:])
	}
	return rels
}

// parseRelFileNode reads a RelFileNode (spcNode, dbNode, relNode).
func parseRelFileNode(b []byte) RelFileNode {
	le := binary.LittleEndian
	return RelFileNode{SpcNode: le.Uint32(b), DbNode: le.Uint32(b[4:]), RelNode: le.Uint32(b[8:])}
}
