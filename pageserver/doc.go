// Package pageserver is Zenith's page server: it ingests WAL for every
// timeline of every tenant, stores it in the repository, and serves pages
// as of any LSN (GetPage@LSN), basebackups, and the management commands,
// over the libpq protocol (the page service) and HTTP.
//
// It must never serve a page it could not reconstruct exactly, and never
// acknowledge WAL before it is durable.
//
// # The data-directory model
//
// Besides pages, a timeline holds what a data directory needs to be
// rebuilt at any LSN: the list of databases (key.DBDir), each database's
// relations and their forks (key.RelDir), each fork's size in blocks
// (key.RelSize), relmapper files, SLRU segments with their sizes and
// lists, prepared transactions' state files and their list, pg_control
// and the latest checkpoint, and small auxiliary files (PG_VERSION,
// configuration) listed under key.AuxFile(AuxDirPath). The directory values
// are small versioned encodings (datadir.go, auxfile.go) whose decoders
// reject malformed input.
//
// Every change goes through a DatadirWriter, one per timeline: Begin(lsn)
// at a record's end LSN, then CreateDatabase/DropDatabase,
// CreateRelation/DropRelation/SetRelSize/PutRelBlock, PutRelMap,
// SetSLRUSegmentSize/RemoveSLRUSegment/PutSLRUPage,
// PutTwoPhaseFile/RemoveTwoPhaseFile, PutControlFile/PutCheckpoint,
// PutAuxFile, and Commit(prev) with the record's start. Import and WAL
// ingest both use it, so they cannot disagree on what a directory means.
//
// ImportDataDir fills a new timeline from a cleanly shut down data
// directory (what `zenith init` does after initdb) as one record at the end
// of its shutdown checkpoint record, so WAL ingest continues right after
// that checkpoint.
package pageserver
