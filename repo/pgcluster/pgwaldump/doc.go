// Package pgwaldump runs PostgreSQL 15's pg_waldump and parses what it
// prints into records: the reference that zenith's own WAL decoder is
// checked against, record for record.
//
// It knows pg_waldump's output exactly as pg_waldump.c
// (XLogDumpDisplayRecord) and xlogdesc.c (XLogRecGetBlockRefInfo) of
// PostgreSQL 15 print it, in both the short form and the detailed (-b,
// --bkp-details) form; it never interprets the rmgr-specific "desc" text
// beyond keeping it.
//
// What it must never do: stand in for zenith's own decoder anywhere but in
// tests and tools that compare against it.
package pgwaldump
