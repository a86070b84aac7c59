package api

import (
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// WALStatus is what a timeline's WAL receiver reports.
type WALStatus struct {
	Source      string     `json:"source"`
	Safekeepers []string   `json:"safekeepers,omitempty"`
	Safekeeper  string     `json:"safekeeper,omitempty"`
	Connected   bool       `json:"connected"`
	LastError   string     `json:"last_error,omitempty"`
	Received    pgdata.LSN `json:"received_lsn"`
	Flushed     pgdata.LSN `json:"flushed_lsn"`
	Ingested    pgdata.LSN `json:"ingested_lsn"`
	LastMessage time.Time  `json:"last_message,omitzero"`
	// DecodeErrors counts the streams ended by WAL that does not decode.
	DecodeErrors uint64 `json:"decode_errors,omitempty"`
	// StoreError is why the WAL store's writes, fsyncs or cuts fail (a
	// full disk, an I/O error), while they do, and since when: the
	// receiver cut the store back to its synced end and tries again
	// with backoff. StoreErrors counts the failures.
	StoreError      string    `json:"store_error,omitempty"`
	StoreErrorSince time.Time `json:"store_error_since,omitzero"`
	StoreErrors     uint64    `json:"store_errors,omitempty"`
}
