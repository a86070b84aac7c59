package pgdata

import (
	"encoding/binary"
	"fmt"
)

// ParseNextOID parses an XLOG_NEXTOID record: the OID counter's new
// value (past the OIDs handed out before the next such record).
func ParseNextOID(r *Record) (uint32, error) {
	if r.Rmgr() != RmgrXLOG || r.RmgrInfo() != XLogNextOID {
		return 0, fmt.Errorf("record at %v (%v, info %#02x) is not a next-OID record", r.LSN, r.Rmgr(), r.Header.Info)
	}
	if len(r.MainData) < 4 {
		return 0, fmt.Errorf("next-OID record at %v: main data is %d bytes, want 4", r.LSN, len(r.MainData))
	}
	return binary.LittleEndian.Uint32(r.MainData), nil
}

// ParseCheckpointRecord parses an XLOG_CHECKPOINT_SHUTDOWN or
// XLOG_CHECKPOINT_ONLINE record's CheckPoint; shutdown reports which.
func ParseCheckpointRecord(r *Record) (cp CheckPoint, shutdown bool, err error) {
	info := r.RmgrInfo()
	if r.Rmgr() != RmgrXLOG || (info != XLogCheckpointShutdown && info != XLogCheckpointOnline) {
		return CheckPoint{}, false, fmt.Errorf("record at %v (%v, info %#02x) is not a checkpoint", r.LSN, r.Rmgr(), r.Header.Info)
	}
	cp, err = ParseCheckPoint(r.MainData)
	if err != nil {
		return CheckPoint{}, false, fmt.Errorf("checkpoint record at %v: %w", r.LSN, err)
	}
	return cp, info == XLogCheckpointShutdown, nil
}

// ParameterChange is a parsed XLOG_PARAMETER_CHANGE record
// (xl_parameter_change): the settings pg_control records, changed since
// the last time the server started.
type ParameterChange struct {
	MaxConnections       int32
	MaxWorkerProcesses   int32
	MaxWALSenders        int32
	MaxPreparedXacts     int32
	MaxLocksPerXact      int32
	WALLevel             int32
	WALLogHints          bool
	TrackCommitTimestamp bool
}

// ParseParameterChange parses an XLOG_PARAMETER_CHANGE record.
func ParseParameterChange(r *Record) (ParameterChange, error) {
	if r.Rmgr() != RmgrXLOG || r.RmgrInfo() != XLogParameterChange {
		return ParameterChange{}, fmt.Errorf("record at %v (%v, info %#02x) is not a parameter change", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 28 { // sizeof(xl_parameter_change), padding included
		return ParameterChange{}, fmt.Errorf("parameter change at %v: main data is %d bytes, want 28", r.LSN, len(d))
	}
	le := binary.LittleEndian
	return ParameterChange{
		MaxConnections:       int32(le.Uint32(d)),
		MaxWorkerProcesses:   int32(le.Uint32(d[4:])),
		MaxWALSenders:        int32(le.Uint32(d[8:])),
		MaxPreparedXacts:     int32(le.Uint32(d[12:])),
		MaxLocksPerXact:      int32(le.Uint32(d[16:])),
		WALLevel:             int32(le.Uint32(d[20:])),
		WALLogHints:          d[24] != 0,
		TrackCommitTimestamp: d[25] != 0,
	}, nil
}

// Apply sets the fields of pg_control the record changes, as xlog_redo
// does.
func (p ParameterChange) Apply(c *ControlFile) {
	c.MaxConnections = p.MaxConnections
	c.MaxWorkerProcesses = p.MaxWorkerProcesses
	c.MaxWALSenders = p.MaxWALSenders
	c.MaxPreparedXacts = p.MaxPreparedXacts
	c.MaxLocksPerXact = p.MaxLocksPerXact
	c.WALLevel = p.WALLevel
	c.WALLogHints = p.WALLogHints
	c.TrackCommitTimestamp = p.TrackCommitTimestamp
}
