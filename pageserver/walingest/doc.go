// Package walingest turns WAL into the data-directory model (package
// datadir): WalIngest decodes nothing itself, it takes each decoded record
// (pgdata.Record) in WAL order and files it through a DatadirWriter: page
// images and WAL records under the blocks it touches, relation sizes and
// directories, SLRU pages, prepared transactions, checkpoints and
// auxiliary files, at the record's end LSN. ClassifyRecord says, for every
// record type of PostgreSQL 15, whether ingest stores it, ignores it or
// refuses it (docs/wal-records.md is generated from it).
//
// ImportDataDir fills a new timeline from a cleanly shut down data
// directory (what `zenith init` does after initdb) as one record at the end
// of its shutdown checkpoint record, so WAL ingest continues right after
// that checkpoint.
//
// It imports datadir, the repository, walredo's record operations and
// PostgreSQL's formats; never the WAL receiver that feeds it, the page
// service or the server, which wires a receiver to a WalIngest.
package walingest
