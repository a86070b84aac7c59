// Package pgdata is Zenith's one place of knowledge about PostgreSQL 15's
// on-disk formats: LSNs, WAL pages and records, full-page images,
// pg_control and the CheckPoint struct, and the names of WAL segment and
// relation files.
//
// Every other package that needs a PostgreSQL fact takes it from here. The
// layouts and constants follow PostgreSQL 15's headers (access/xlogrecord.h,
// access/xlog_internal.h, catalog/pg_control.h, storage/bufpage.h); the
// code is ours. Parsers in this package read outside input: they must
// return an error for malformed bytes, never panic.
package pgdata
