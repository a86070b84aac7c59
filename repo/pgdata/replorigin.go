package pgdata

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// Info values of the ReplicationOrigin resource manager
// (replication/origin.h).
const (
	XLogReplOriginSet  uint8 = 0x00
	XLogReplOriginDrop uint8 = 0x10
)

// Replication origin ids with a meaning of their own (RepOriginId).
const (
	InvalidReplOrigin    uint16 = 0
	DoNotReplicateOrigin uint16 = 0xFFFF // DoNotReplicateId: never tracked
)

// ReplOriginCheckpointPath is the file in which PostgreSQL keeps the
// replication origins' progress across restarts
// (CheckPointReplicationOrigin, read by StartupReplicationOrigin).
const ReplOriginCheckpointPath = "pg_logical/replorigin_checkpoint"

// replOriginMagic is REPLICATION_STATE_MAGIC of origin.c.
const replOriginMagic = 0x1257DADE

// replOriginStateSize is sizeof(ReplicationStateOnDisk): a RepOriginId,
// padding, and the remote LSN.
const replOriginStateSize = 16

// ReplOriginSet is a parsed XLOG_REPLORIGIN_SET record (xl_replorigin_set):
// the origin's remote LSN becomes RemoteLSN, or only moves forward to it
// unless Force.
type ReplOriginSet struct {
	RemoteLSN LSN
	Origin    uint16
	Force     bool
}

// ParseReplOriginSet parses an XLOG_REPLORIGIN_SET record.
func ParseReplOriginSet(r *Record) (ReplOriginSet, error) {
	if r.Rmgr() != RmgrReplicationOrigin || r.Header.Info&^XLRInfoMask != XLogReplOriginSet {
		return ReplOriginSet{}, fmt.Errorf("record at %v (%v, info %#02x) is not a replication origin SET", r.LSN, r.Rmgr(), r.Header.Info)
	}
	if len(r.MainData) < 11 {
		return ReplOriginSet{}, fmt.Errorf("replication origin SET record at %v: main data is %d bytes, want 11", r.LSN, len(r.MainData))
	}
	le := binary.LittleEndian
	return ReplOriginSet{RemoteLSN: LSN(le.Uint64(r.MainData)), Origin: le.Uint16(r.MainData[8:]), Force: r.MainData[10] != 0}, nil
}

// ParseReplOriginDrop parses an XLOG_REPLORIGIN_DROP record
// (xl_replorigin_drop): the origin whose progress is forgotten.
func ParseReplOriginDrop(r *Record) (uint16, error) {
	if r.Rmgr() != RmgrReplicationOrigin || r.Header.Info&^XLRInfoMask != XLogReplOriginDrop {
		return 0, fmt.Errorf("record at %v (%v, info %#02x) is not a replication origin DROP", r.LSN, r.Rmgr(), r.Header.Info)
	}
	if len(r.MainData) < 2 {
		return 0, fmt.Errorf("replication origin DROP record at %v: main data is %d bytes, want 2", r.LSN, len(r.MainData))
	}
	return binary.LittleEndian.Uint16(r.MainData), nil
}

// ReplOrigins is the replication origins' progress: each tracked origin's
// remote LSN, as replorigin_redo and the commit, abort and prepare redo
// leave PostgreSQL's replication states.
type ReplOrigins map[uint16]LSN

// Advance does what replorigin_advance does at replay: origin's remote LSN
// moves forward to remote (or to remote whatever it was, if backward), and
// an origin not tracked yet is from now on. The invalid and the
// do-not-replicate origins are never tracked.
func (o ReplOrigins) Advance(origin uint16, remote LSN, backward bool) {
	if origin == InvalidReplOrigin || origin == DoNotReplicateOrigin {
		return
	}
	if cur, ok := o[origin]; !ok || backward || cur < remote {
		o[origin] = remote
	}
}

// Encode returns the replorigin_checkpoint file holding o: the magic, one
// ReplicationStateOnDisk per origin (by id), and a CRC-32C of all that.
func (o ReplOrigins) Encode() []byte {
	ids := make([]uint16, 0, len(o))
	for id := range o {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	le := binary.LittleEndian
	b := le.AppendUint32(make([]byte, 0, 8+len(ids)*replOriginStateSize), replOriginMagic)
	for _, id := range ids {
		var s [replOriginStateSize]byte
		le.PutUint16(s[:], id)
		le.PutUint64(s[8:], uint64(o[id]))
		b = append(b, s[:]...)
	}
	return le.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// ParseReplOriginCheckpoint parses a replorigin_checkpoint file.
func ParseReplOriginCheckpoint(b []byte) (ReplOrigins, error) {
	le := binary.LittleEndian
	if len(b) < 8 || (len(b)-8)%replOriginStateSize != 0 {
		return nil, fmt.Errorf("replication origin checkpoint of %d bytes: not a magic, whole states and a CRC", len(b))
	}
	if m := le.Uint32(b); m != replOriginMagic {
		return nil, fmt.Errorf("replication origin checkpoint has magic %#x, want %#x", m, replOriginMagic)
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), le.Uint32(b[len(b)-4:]); got != want {
		return nil, fmt.Errorf("replication origin checkpoint: CRC %#x, stored %#x", got, want)
	}
	o := ReplOrigins{}
	for s := body[4:]; len(s) > 0; s = s[replOriginStateSize:] {
		o[le.Uint16(s)] = LSN(le.Uint64(s[8:]))
	}
	return o, nil
}
