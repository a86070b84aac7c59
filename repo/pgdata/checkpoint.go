package pgdata

import (
	"encoding/binary"
	"fmt"
)

// CheckPointSize is sizeof(CheckPoint) in PostgreSQL 15 on 64-bit
// platforms: the main data of a checkpoint record and the checkPointCopy
// in pg_control.
const CheckPointSize = 88

// Info values of RM_XLOG_ID records (catalog/pg_control.h).
const (
	XLogCheckpointShutdown  = 0x00
	XLogCheckpointOnline    = 0x10
	XLogNoop                = 0x20
	XLogNextOID             = 0x30
	XLogSwitch              = 0x40
	XLogBackupEnd           = 0x50
	XLogParameterChange     = 0x60
	XLogRestorePoint        = 0x70
	XLogFPWChange           = 0x80
	XLogEndOfRecovery       = 0x90
	XLogFPIForHint          = 0xA0
	XLogFPI                 = 0xB0
	XLogOverwriteContrecord = 0xD0
)

// CheckPoint is PostgreSQL's CheckPoint struct (catalog/pg_control.h): the
// body of a checkpoint record, and the copy of the last one in pg_control
// from which a starting server takes its running counters.
type CheckPoint struct {
	Redo              LSN    // where replay would start
	ThisTimeLineID    uint32 // current timeline
	PrevTimeLineID    uint32 // previous timeline, if this one began here
	FullPageWrites    bool
	NextXid           uint64 // FullTransactionId: epoch << 32 | xid
	NextOid           uint32
	NextMulti         uint32
	NextMultiOffset   uint32
	OldestXid         uint32 // cluster-wide minimum datfrozenxid
	OldestXidDB       uint32
	OldestMulti       uint32 // cluster-wide minimum datminmxid
	OldestMultiDB     uint32
	Time              int64 // pg_time_t, seconds since the Unix epoch
	OldestCommitTsXid uint32
	NewestCommitTsXid uint32
	OldestActiveXid   uint32
}

// Offsets of CheckPoint's fields, with the C compiler's padding.
const (
	cpRedo              = 0
	cpThisTimeLineID    = 8
	cpPrevTimeLineID    = 12
	cpFullPageWrites    = 16
	cpNextXid           = 24
	cpNextOid           = 32
	cpNextMulti         = 36
	cpNextMultiOffset   = 40
	cpOldestXid         = 44
	cpOldestXidDB       = 48
	cpOldestMulti       = 52
	cpOldestMultiDB     = 56
	cpTime              = 64
	cpOldestCommitTsXid = 72
	cpNewestCommitTsXid = 76
	cpOldestActiveXid   = 80
)

// ParseCheckPoint decodes a CheckPoint from the main data of a checkpoint
// record or from pg_control.
func ParseCheckPoint(b []byte) (CheckPoint, error) {
	if len(b) < CheckPointSize {
		return CheckPoint{}, fmt.Errorf("checkpoint: %d bytes, want %d", len(b), CheckPointSize)
	}
	le := binary.LittleEndian
	return CheckPoint{
		Redo:              LSN(le.Uint64(b[cpRedo:])),
		ThisTimeLineID:    le.Uint32(b[cpThisTimeLineID:]),
		PrevTimeLineID:    le.Uint32(b[cpPrevTimeLineID:]),
		FullPageWrites:    b[cpFullPageWrites] != 0,
		NextXid:           le.Uint64(b[cpNextXid:]),
		NextOid:           le.Uint32(b[cpNextOid:]),
		NextMulti:         le.Uint32(b[cpNextMulti:]),
		NextMultiOffset:   le.Uint32(b[cpNextMultiOffset:]),
		OldestXid:         le.Uint32(b[cpOldestXid:]),
		OldestXidDB:       le.Uint32(b[cpOldestXidDB:]),
		OldestMulti:       le.Uint32(b[cpOldestMulti:]),
		OldestMultiDB:     le.Uint32(b[cpOldestMultiDB:]),
		Time:              int64(le.Uint64(b[cpTime:])),
		OldestCommitTsXid: le.Uint32(b[cpOldestCommitTsXid:]),
		NewestCommitTsXid: le.Uint32(b[cpNewestCommitTsXid:]),
		OldestActiveXid:   le.Uint32(b[cpOldestActiveXid:]),
	}, nil
}

// Encode returns the CheckPoint's 88 bytes as PostgreSQL lays them out,
// padding zeroed.
func (c *CheckPoint) Encode() []byte {
	b := make([]byte, CheckPointSize)
	c.encodeInto(b)
	return b
}

func (c *CheckPoint) encodeInto(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[cpRedo:], uint64(c.Redo))
	le.PutUint32(b[cpThisTimeLineID:], c.ThisTimeLineID)
	le.PutUint32(b[cpPrevTimeLineID:], c.PrevTimeLineID)
	b[cpFullPageWrites] = boolByte(c.FullPageWrites)
	le.PutUint64(b[cpNextXid:], c.NextXid)
	le.PutUint32(b[cpNextOid:], c.NextOid)
	le.PutUint32(b[cpNextMulti:], c.NextMulti)
	le.PutUint32(b[cpNextMultiOffset:], c.NextMultiOffset)
	le.PutUint32(b[cpOldestXid:], c.OldestXid)
	le.PutUint32(b[cpOldestXidDB:], c.OldestXidDB)
	le.PutUint32(b[cpOldestMulti:], c.OldestMulti)
	le.PutUint32(b[cpOldestMultiDB:], c.OldestMultiDB)
	le.PutUint64(b[cpTime:], uint64(c.Time))
	le.PutUint32(b[cpOldestCommitTsXid:], c.OldestCommitTsXid)
	le.PutUint32(b[cpNewestCommitTsXid:], c.NewestCommitTsXid)
	le.PutUint32(b[cpOldestActiveXid:], c.OldestActiveXid)
}

// NextXidString prints NextXid as pg_controldata does, "epoch:xid".
func (c *CheckPoint) NextXidString() string {
	return fmt.Sprintf("%d:%d", c.NextXid>>32, uint32(c.NextXid))
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
