// Package datadir is the page server's data-directory model: what a
// timeline holds besides pages so that a data directory can be rebuilt at
// any LSN, as keys and values of the repository.
//
// Besides pages, a timeline holds what a data directory needs to be
// rebuilt at any LSN: the list of databases (key.DBDir), each database's
// relations and their forks (key.RelDir), each fork's size in blocks
// (key.RelSize), relmapper files, SLRU segments with their sizes and
// lists, prepared transactions' state files and their list, pg_control
// and the latest checkpoint, and small auxiliary files (PG_VERSION,
// configuration) listed under key.AuxFile(AuxDirPath), and tablespaces.
// The directory values are small versioned encodings (datadir.go,
// auxfile.go, datadir_tblspc.go) whose decoders reject malformed input.
//
// Every change goes through a DatadirWriter, one per timeline: Begin(lsn)
// at a record's end LSN, then CreateDatabase/DropDatabase,
// CreateRelation/DropRelation/SetRelSize/PutRelBlock, PutRelMap,
// SetSLRUSegmentSize/RemoveSLRUSegment/PutSLRUPage,
// PutTwoPhaseFile/RemoveTwoPhaseFile, PutControlFile/PutCheckpoint,
// PutAuxFile, and Commit(prev) with the record's start. Import and WAL
// ingest both use it, so they cannot disagree on what a directory means.
//
// DatadirReader reads the model at an LSN (basebackup, the page service,
// sizes). The paths of a database's directory (DatabaseDir,
// DatabaseVersionPath) are here because the writer, ingest and basebackup
// all need them.
//
// It imports the repository and PostgreSQL's formats, never the page
// server or its other packages: ingest (walingest), import and basebackup
// are built on it, not the other way round.
package datadir
