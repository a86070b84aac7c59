package pgdata

import (
	"encoding/binary"
	"fmt"
)

// Record types of the Database resource manager (dbcommands_xlog.h).
const (
	XLogDBaseCreateFileCopy uint8 = 0x00
	XLogDBaseCreateWALLog   uint8 = 0x10
	XLogDBaseDrop           uint8 = 0x20
)

// DBaseCreate is a parsed CREATE DATABASE record. With FileCopy
// (xl_dbase_create_file_copy_rec) the new database's directory is a copy
// of the source database's, files as they are on disk at the record; without
// it (xl_dbase_create_wal_log_rec, STRATEGY WAL_LOG) the record only makes
// the directory and its PG_VERSION, and the relations, their blocks and
// the relation map follow in their own records.
type DBaseCreate struct {
	FileCopy         bool
	DbID, TsID       uint32
	SrcDbID, SrcTsID uint32 // FileCopy only
}

// ParseDBaseCreate parses an XLOG_DBASE_CREATE_FILE_COPY or
// XLOG_DBASE_CREATE_WAL_LOG record.
func ParseDBaseCreate(r *Record) (DBaseCreate, error) {
	info := r.RmgrInfo()
	if r.Rmgr() != RmgrDatabase || (info != XLogDBaseCreateFileCopy && info != XLogDBaseCreateWALLog) {
		return DBaseCreate{}, fmt.Errorf("record at %v (%v, info %#02x) is not a database creation", r.LSN, r.Rmgr(), r.Header.Info)
	}
	c := DBaseCreate{FileCopy: info == XLogDBaseCreateFileCopy}
	want := 8
	if c.FileCopy {
		want = 16
	}
	d := r.MainData
	if len(d) < want {
		return DBaseCreate{}, fmt.Errorf("database creation at %v: main data is %d bytes, want %d", r.LSN, len(d), want)
	}
	le := binary.LittleEndian
	c.DbID, c.TsID = le.Uint32(d), le.Uint32(d[4:])
	if c.FileCopy {
		c.SrcDbID, c.SrcTsID = le.Uint32(d[8:]), le.Uint32(d[12:])
	}
	if c.DbID == 0 || (c.FileCopy && c.SrcDbID == 0) {
		return DBaseCreate{}, fmt.Errorf("database creation at %v: database OID 0", r.LSN)
	}
	return c, nil
}

// DBaseDrop is a parsed XLOG_DBASE_DROP record (xl_dbase_drop_rec): the
// database's directory is removed in each of the tablespaces.
type DBaseDrop struct {
	DbID  uint32
	TsIDs []uint32
}

// ParseDBaseDrop parses an XLOG_DBASE_DROP record.
func ParseDBaseDrop(r *Record) (DBaseDrop, error) {
	if r.Rmgr() != RmgrDatabase || r.RmgrInfo() != XLogDBaseDrop {
		return DBaseDrop{}, fmt.Errorf("record at %v (%v, info %#02x) is not a database drop", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := xactReader{b: r.MainData}
	drop := DBaseDrop{DbID: d.u32("db_id")}
	drop.TsIDs = d.xids("tablespace_ids") // an int count of Oids, as xids are
	if d.err != nil {
		return DBaseDrop{}, fmt.Errorf("database drop at %v: %w", r.LSN, d.err)
	}
	if drop.DbID == 0 {
		return DBaseDrop{}, fmt.Errorf("database drop at %v: database OID 0", r.LSN)
	}
	return drop, nil
}
