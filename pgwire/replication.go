package pgwire

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// The messages of PostgreSQL's streaming replication protocol, carried in
// CopyData once START_REPLICATION has switched the session to COPY BOTH
// (protocol-replication.html: XLogData, Primary keepalive message, Standby
// status update). Sender and receiver sides both live here: the page
// server and safekeepers receive WAL, and safekeepers also send it.

// Message type bytes.
const (
	MsgXLogData      = 'w'
	MsgKeepalive     = 'k'
	MsgStandbyStatus = 'r'
	MsgHotStandby    = 'h'
)

// pgEpoch is the origin of PostgreSQL timestamps (2000-01-01 UTC).
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// PGTime converts a PostgreSQL timestamp (microseconds since 2000-01-01)
// to a time.
func PGTime(us int64) time.Time { return pgEpoch.Add(time.Duration(us) * time.Microsecond) }

// ToPGTime converts a time to a PostgreSQL timestamp.
func ToPGTime(t time.Time) int64 { return t.Sub(pgEpoch).Microseconds() }

// XLogData is a chunk of WAL sent by a walsender.
type XLogData struct {
	Start    pgdata.LSN // LSN of the first byte of Data
	WALEnd   pgdata.LSN // the sender's current end of WAL
	SendTime int64      // PostgreSQL timestamp
	Data     []byte
}

// Keepalive is a walsender's primary keepalive message.
type Keepalive struct {
	WALEnd         pgdata.LSN
	SendTime       int64
	ReplyRequested bool
}

// StandbyStatus is a standby status update: what a receiver has written,
// flushed and applied. A synchronous standby's flush position is what a
// commit waits for.
type StandbyStatus struct {
	Written        pgdata.LSN
	Flushed        pgdata.LSN
	Applied        pgdata.LSN
	ClientTime     int64
	ReplyRequested bool
}

const (
	xlogDataHeader  = 1 + 8 + 8 + 8
	keepaliveSize   = 1 + 8 + 8 + 1
	standbyStatSize = 1 + 8 + 8 + 8 + 8 + 1
)

// ParseReplicationMessage decodes a CopyData payload sent by a walsender:
// *XLogData or *Keepalive. XLogData.Data aliases b.
func ParseReplicationMessage(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty replication message")
	}
	be := binary.BigEndian
	switch b[0] {
	case MsgXLogData:
		if len(b) < xlogDataHeader {
			return nil, fmt.Errorf("XLogData message of %d bytes, want at least %d", len(b), xlogDataHeader)
		}
		return &XLogData{
			Start:    pgdata.LSN(be.Uint64(b[1:])),
			WALEnd:   pgdata.LSN(be.Uint64(b[9:])),
			SendTime: int64(be.Uint64(b[17:])),
			Data:     b[xlogDataHeader:],
		}, nil
	case MsgKeepalive:
		if len(b) != keepaliveSize {
			return nil, fmt.Errorf("keepalive message of %d bytes, want %d", len(b), keepaliveSize)
		}
		return &Keepalive{
			WALEnd:         pgdata.LSN(be.Uint64(b[1:])),
			SendTime:       int64(be.Uint64(b[9:])),
			ReplyRequested: b[17] != 0,
		}, nil
	}
	return nil, fmt.Errorf("unknown replication message type %q", b[0])
}

// ParseStandbyMessage decodes a CopyData payload sent by a replication
// client: *StandbyStatus, or nil for hot standby feedback (which carries
// nothing a WAL service needs).
func ParseStandbyMessage(b []byte) (*StandbyStatus, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty standby message")
	}
	switch b[0] {
	case MsgStandbyStatus:
		if len(b) != standbyStatSize {
			return nil, fmt.Errorf("standby status update of %d bytes, want %d", len(b), standbyStatSize)
		}
		be := binary.BigEndian
		return &StandbyStatus{
			Written:        pgdata.LSN(be.Uint64(b[1:])),
			Flushed:        pgdata.LSN(be.Uint64(b[9:])),
			Applied:        pgdata.LSN(be.Uint64(b[17:])),
			ClientTime:     int64(be.Uint64(b[25:])),
			ReplyRequested: b[33] != 0,
		}, nil
	case MsgHotStandby:
		return nil, nil
	}
	return nil, fmt.Errorf("unknown standby message type %q", b[0])
}

// Encode returns the CopyData payload of m.
func (m *XLogData) Encode() []byte {
	b := make([]byte, xlogDataHeader+len(m.Data))
	m.putHeader(b)
	copy(b[xlogDataHeader:], m.Data)
	return b
}

// putHeader writes the header of m's payload, all but the data, into the
// first xlogDataHeader bytes of b.
func (m *XLogData) putHeader(b []byte) {
	b[0] = MsgXLogData
	be := binary.BigEndian
	be.PutUint64(b[1:], uint64(m.Start))
	be.PutUint64(b[9:], uint64(m.WALEnd))
	be.PutUint64(b[17:], uint64(m.SendTime))
}

// Encode returns the CopyData payload of m.
func (m *Keepalive) Encode() []byte {
	b := make([]byte, keepaliveSize)
	b[0] = MsgKeepalive
	be := binary.BigEndian
	be.PutUint64(b[1:], uint64(m.WALEnd))
	be.PutUint64(b[9:], uint64(m.SendTime))
	b[17] = boolByte(m.ReplyRequested)
	return b
}

// Encode returns the CopyData payload of m.
func (m *StandbyStatus) Encode() []byte {
	b := make([]byte, standbyStatSize)
	b[0] = MsgStandbyStatus
	be := binary.BigEndian
	be.PutUint64(b[1:], uint64(m.Written))
	be.PutUint64(b[9:], uint64(m.Flushed))
	be.PutUint64(b[17:], uint64(m.Applied))
	be.PutUint64(b[25:], uint64(m.ClientTime))
	b[33] = boolByte(m.ReplyRequested)
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
