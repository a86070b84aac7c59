package pgdata

// Sizes fixed when PostgreSQL 15 is built with its defaults, as Debian's
// packages are (pg_config.h: BLCKSZ, XLOG_BLCKSZ; xlog_internal.h).
const (
	// BlockSize is the size of a relation page (BLCKSZ).
	BlockSize = 8192
	// XLogBlockSize is the size of a WAL page (XLOG_BLCKSZ).
	XLogBlockSize = 8192
	// WALSegmentSize is the default WAL segment size (16 MiB); a cluster
	// may use another, which pg_control and the long page header record.
	WALSegmentSize = 16 << 20
	// PGMajorVersion is the PostgreSQL major version whose formats this
	// package knows.
	PGMajorVersion = 15
)
