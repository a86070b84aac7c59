package pgdata

import (
	"encoding/binary"
	"fmt"
)

// Record types of the Standby resource manager (standbydefs.h).
const (
	XLogStandbyLock   uint8 = 0x00
	XLogRunningXacts  uint8 = 0x10
	XLogInvalidations uint8 = 0x20
)

// RunningXacts is a parsed XLOG_RUNNING_XACTS record (xl_running_xacts),
// without the xid arrays: the transaction horizons when it was written.
type RunningXacts struct {
	NextXid            uint32
	OldestRunningXid   uint32
	LatestCompletedXid uint32
}

// ParseRunningXacts parses an XLOG_RUNNING_XACTS record.
func ParseRunningXacts(r *Record) (RunningXacts, error) {
	if r.Rmgr() != RmgrStandby || r.RmgrInfo() != XLogRunningXacts {
		return RunningXacts{}, fmt.Errorf("record at %v (%v, info %#02x) is not a running-transactions record", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 24 {
		return RunningXacts{}, fmt.Errorf("running-transactions record at %v: main data is %d bytes, want at least 24", r.LSN, len(d))
	}
	le := binary.LittleEndian
	xcnt, subxcnt := int64(int32(le.Uint32(d))), int64(int32(le.Uint32(d[4:])))
	if xcnt < 0 || subxcnt < 0 || int64(len(d)-24) < 4*(xcnt+subxcnt) {
		return RunningXacts{}, fmt.Errorf("running-transactions record at %v: %d + %d xids do not fit in %d bytes", r.LSN, xcnt, subxcnt, len(d)-24)
	}
	return RunningXacts{
		NextXid:            le.Uint32(d[12:]),
		OldestRunningXid:   le.Uint32(d[16:]),
		LatestCompletedXid: le.Uint32(d[20:]),
	}, nil
}
