package pgdata

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// Facts about global/pg_control in PostgreSQL 15 (catalog/pg_control.h,
// catalog/catversion.h).
const (
	// ControlFileSize is the size of the pg_control file on disk
	// (PG_CONTROL_FILE_SIZE); the struct is zero-padded to it.
	ControlFileSize = 8192
	// ControlVersion is PG_CONTROL_VERSION of PostgreSQL 15.
	ControlVersion = 1300
	// CatalogVersion is CATALOG_VERSION_NO of PostgreSQL 15.
	CatalogVersion = 202209061
	// ControlDataSize is offsetof(ControlFileData, crc): what the CRC covers.
	ControlDataSize = 288
	// MockAuthNonceLen is MOCK_AUTH_NONCE_LEN.
	MockAuthNonceLen = 32
	// FloatFormatValue is the constant PostgreSQL stores to detect float
	// format mismatches (FLOATFORMAT_VALUE).
	FloatFormatValue = 1234567.0
)

// DBState is the cluster state recorded in pg_control (DBState).
type DBState int32

// The cluster states.
const (
	DBStartup DBState = iota
	DBShutdowned
	DBShutdownedInRecovery
	DBShutdowning
	DBInCrashRecovery
	DBInArchiveRecovery
	DBInProduction
)

var dbStateNames = [...]string{
	"starting up", "shut down", "shut down in recovery", "shutting down",
	"in crash recovery", "in archive recovery", "in production",
}

// String names the state as pg_controldata does.
func (s DBState) String() string {
	if s >= 0 && int(s) < len(dbStateNames) {
		return dbStateNames[s]
	}
	return fmt.Sprintf("unrecognized status code %d", int32(s))
}

// WAL levels stored in pg_control (WalLevel in access/xlog.h).
const (
	WALLevelMinimal = 0
	WALLevelReplica = 1
	WALLevelLogical = 2
)

// ControlFile is PostgreSQL 15's ControlFileData, the contents of
// global/pg_control.
type ControlFile struct {
	SystemIdentifier uint64
	ControlVersion   uint32
	CatalogVersion   uint32
	State            DBState
	Time             int64 // last update, seconds since the Unix epoch
	CheckPoint       LSN   // where the last checkpoint record is
	// CheckPointCopy is a copy of the last checkpoint record's body. A
	// starting server takes its next XID, OID and multixact from here.
	CheckPointCopy CheckPoint

	UnloggedLSN         LSN
	MinRecoveryPoint    LSN
	MinRecoveryPointTLI uint32
	BackupStartPoint    LSN
	BackupEndPoint      LSN
	BackupEndRequired   bool

	WALLevel             int32
	WALLogHints          bool
	MaxConnections       int32
	MaxWorkerProcesses   int32
	MaxWALSenders        int32
	MaxPreparedXacts     int32
	MaxLocksPerXact      int32
	TrackCommitTimestamp bool

	MaxAlign          uint32
	FloatFormat       float64
	BlockSize         uint32
	RelSegSize        uint32
	XLogBlockSize     uint32
	XLogSegSize       uint32
	NameDataLen       uint32
	IndexMaxKeys      uint32
	ToastMaxChunkSize uint32
	LOBlockSize       uint32
	Float8ByVal       bool

	DataChecksumVersion     uint32
	MockAuthenticationNonce [MockAuthNonceLen]byte
	// CRC is the stored checksum; Encode computes a fresh one.
	CRC uint32
}

// Offsets of ControlFileData's fields, with the C compiler's padding.
const (
	cfSystemIdentifier     = 0
	cfControlVersion       = 8
	cfCatalogVersion       = 12
	cfState                = 16
	cfTime                 = 24
	cfCheckPoint           = 32
	cfCheckPointCopy       = 40
	cfUnloggedLSN          = 128
	cfMinRecoveryPoint     = 136
	cfMinRecoveryPointTLI  = 144
	cfBackupStartPoint     = 152
	cfBackupEndPoint       = 160
	cfBackupEndRequired    = 168
	cfWALLevel             = 172
	cfWALLogHints          = 176
	cfMaxConnections       = 180
	cfMaxWorkerProcesses   = 184
	cfMaxWALSenders        = 188
	cfMaxPreparedXacts     = 192
	cfMaxLocksPerXact      = 196
	cfTrackCommitTimestamp = 200
	cfMaxAlign             = 204
	cfFloatFormat          = 208
	cfBlockSize            = 216
	cfRelSegSize           = 220
	cfXLogBlockSize        = 224
	cfXLogSegSize          = 228
	cfNameDataLen          = 232
	cfIndexMaxKeys         = 236
	cfToastMaxChunkSize    = 240
	cfLOBlockSize          = 244
	cfFloat8ByVal          = 248
	cfDataChecksumVersion  = 252
	cfMockAuthNonce        = 256
	cfCRC                  = ControlDataSize
)

// castagnoli is the CRC-32C table PostgreSQL's pg_crc32c uses.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ParseControlFile decodes global/pg_control. It checks the CRC and the
// version numbers, so a file from another PostgreSQL version or a damaged
// one is an error, never silently misread.
func ParseControlFile(b []byte) (*ControlFile, error) {
	if len(b) < ControlDataSize+4 {
		return nil, fmt.Errorf("pg_control: %d bytes, want at least %d", len(b), ControlDataSize+4)
	}
	le := binary.LittleEndian
	c := &ControlFile{
		SystemIdentifier:     le.Uint64(b[cfSystemIdentifier:]),
		ControlVersion:       le.Uint32(b[cfControlVersion:]),
		CatalogVersion:       le.Uint32(b[cfCatalogVersion:]),
		State:                DBState(le.Uint32(b[cfState:])),
		Time:                 int64(le.Uint64(b[cfTime:])),
		CheckPoint:           LSN(le.Uint64(b[cfCheckPoint:])),
		UnloggedLSN:          LSN(le.Uint64(b[cfUnloggedLSN:])),
		MinRecoveryPoint:     LSN(le.Uint64(b[cfMinRecoveryPoint:])),
		MinRecoveryPointTLI:  le.Uint32(b[cfMinRecoveryPointTLI:]),
		BackupStartPoint:     LSN(le.Uint64(b[cfBackupStartPoint:])),
		BackupEndPoint:       LSN(le.Uint64(b[cfBackupEndPoint:])),
		BackupEndRequired:    b[cfBackupEndRequired] != 0,
		WALLevel:             int32(le.Uint32(b[cfWALLevel:])),
		WALLogHints:          b[cfWALLogHints] != 0,
		MaxConnections:       int32(le.Uint32(b[cfMaxConnections:])),
		MaxWorkerProcesses:   int32(le.Uint32(b[cfMaxWorkerProcesses:])),
		MaxWALSenders:        int32(le.Uint32(b[cfMaxWALSenders:])),
		MaxPreparedXacts:     int32(le.Uint32(b[cfMaxPreparedXacts:])),
		MaxLocksPerXact:      int32(le.Uint32(b[cfMaxLocksPerXact:])),
		TrackCommitTimestamp: b[cfTrackCommitTimestamp] != 0,
		MaxAlign:             le.Uint32(b[cfMaxAlign:]),
		FloatFormat:          math.Float64frombits(le.Uint64(b[cfFloatFormat:])),
		BlockSize:            le.Uint32(b[cfBlockSize:]),
		RelSegSize:           le.Uint32(b[cfRelSegSize:]),
		XLogBlockSize:        le.Uint32(b[cfXLogBlockSize:]),
		XLogSegSize:          le.Uint32(b[cfXLogSegSize:]),
		NameDataLen:          le.Uint32(b[cfNameDataLen:]),
		IndexMaxKeys:         le.Uint32(b[cfIndexMaxKeys:]),
		ToastMaxChunkSize:    le.Uint32(b[cfToastMaxChunkSize:]),
		LOBlockSize:          le.Uint32(b[cfLOBlockSize:]),
		Float8ByVal:          b[cfFloat8ByVal] != 0,
		DataChecksumVersion:  le.Uint32(b[cfDataChecksumVersion:]),
		CRC:                  le.Uint32(b[cfCRC:]),
	}
	copy(c.MockAuthenticationNonce[:], b[cfMockAuthNonce:cfMockAuthNonce+MockAuthNonceLen])
	cp, err := ParseCheckPoint(b[cfCheckPointCopy : cfCheckPointCopy+CheckPointSize])
	if err != nil {
		return nil, fmt.Errorf("pg_control: %w", err)
	}
	c.CheckPointCopy = cp

	if c.ControlVersion != ControlVersion {
		return nil, fmt.Errorf("pg_control: version %d, want %d (PostgreSQL %d)", c.ControlVersion, ControlVersion, PGMajorVersion)
	}
	if got := crc32.Checksum(b[:ControlDataSize], castagnoli); got != c.CRC {
		return nil, fmt.Errorf("pg_control: CRC mismatch: stored %08X, computed %08X", c.CRC, got)
	}
	if c.CatalogVersion != CatalogVersion {
		return nil, fmt.Errorf("pg_control: catalog version %d, want %d (PostgreSQL %d)", c.CatalogVersion, CatalogVersion, PGMajorVersion)
	}
	if c.XLogSegSize == 0 || c.XLogSegSize&(c.XLogSegSize-1) != 0 {
		return nil, fmt.Errorf("pg_control: WAL segment size %d is not a power of two", c.XLogSegSize)
	}
	return c, nil
}

// Encode returns the 8192-byte pg_control file for c, with a freshly
// computed CRC (c.CRC is ignored and not changed).
func (c *ControlFile) Encode() []byte {
	b := make([]byte, ControlFileSize)
	le := binary.LittleEndian
	le.PutUint64(b[cfSystemIdentifier:], c.SystemIdentifier)
	le.PutUint32(b[cfControlVersion:], c.ControlVersion)
	le.PutUint32(b[cfCatalogVersion:], c.CatalogVersion)
	le.PutUint32(b[cfState:], uint32(c.State))
	le.PutUint64(b[cfTime:], uint64(c.Time))
	le.PutUint64(b[cfCheckPoint:], uint64(c.CheckPoint))
	c.CheckPointCopy.encodeInto(b[cfCheckPointCopy : cfCheckPointCopy+CheckPointSize])
	le.PutUint64(b[cfUnloggedLSN:], uint64(c.UnloggedLSN))
	le.PutUint64(b[cfMinRecoveryPoint:], uint64(c.MinRecoveryPoint))
	le.PutUint32(b[cfMinRecoveryPointTLI:], c.MinRecoveryPointTLI)
	le.PutUint64(b[cfBackupStartPoint:], uint64(c.BackupStartPoint))
	le.PutUint64(b[cfBackupEndPoint:], uint64(c.BackupEndPoint))
	b[cfBackupEndRequired] = boolByte(c.BackupEndRequired)
	le.PutUint32(b[cfWALLevel:], uint32(c.WALLevel))
	b[cfWALLogHints] = boolByte(c.WALLogHints)
	le.PutUint32(b[cfMaxConnections:], uint32(c.MaxConnections))
	le.PutUint32(b[cfMaxWorkerProcesses:], uint32(c.MaxWorkerProcesses))
	le.PutUint32(b[cfMaxWALSenders:], uint32(c.MaxWALSenders))
	le.PutUint32(b[cfMaxPreparedXacts:], uint32(c.MaxPreparedXacts))
	le.PutUint32(b[cfMaxLocksPerXact:], uint32(c.MaxLocksPerXact))
	b[cfTrackCommitTimestamp] = boolByte(c.TrackCommitTimestamp)
	le.PutUint32(b[cfMaxAlign:], c.MaxAlign)
	le.PutUint64(b[cfFloatFormat:], math.Float64bits(c.FloatFormat))
	le.PutUint32(b[cfBlockSize:], c.BlockSize)
	le.PutUint32(b[cfRelSegSize:], c.RelSegSize)
	le.PutUint32(b[cfXLogBlockSize:], c.XLogBlockSize)
	le.PutUint32(b[cfXLogSegSize:], c.XLogSegSize)
	le.PutUint32(b[cfNameDataLen:], c.NameDataLen)
	le.PutUint32(b[cfIndexMaxKeys:], c.IndexMaxKeys)
	le.PutUint32(b[cfToastMaxChunkSize:], c.ToastMaxChunkSize)
	le.PutUint32(b[cfLOBlockSize:], c.LOBlockSize)
	b[cfFloat8ByVal] = boolByte(c.Float8ByVal)
	le.PutUint32(b[cfDataChecksumVersion:], c.DataChecksumVersion)
	copy(b[cfMockAuthNonce:], c.MockAuthenticationNonce[:])
	le.PutUint32(b[cfCRC:], crc32.Checksum(b[:ControlDataSize], castagnoli))
	return b
}
