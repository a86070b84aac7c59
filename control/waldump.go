package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// WaldumpCommand is `zenith waldump`: it prints the records of WAL segment
// files, as pg_waldump does, for people and (with --json) for programs.
func WaldumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "waldump",
		Usage:     "print the records of PostgreSQL 15 WAL segment files",
		ArgsUsage: "FILE|DIR...",
		Description: `Decodes WAL segment files (or every segment file in a directory such as a
data directory's pg_wal) with zenith's own WAL decoder, the one the page server
ingests WAL with, and prints one line per record. The fields are pg_waldump's:
rmgr, len (rec/tot) where rec leaves out full-page images, the transaction id,
the record's LSN and the previous record's, the record type, and every block
it references (tablespace/database/relfilenode, fork when not main, block
number, FPW when the record carries a full-page image of it).

Reading starts at the first file's first record, or at --start (an LSN as
PostgreSQL prints it; a position inside a record starts at the next record),
and stops at --end or where the valid WAL ends: a zeroed or recycled page, a
torn record, a missing segment file. Where and why it ended goes to stderr;
the exit status is 0 if at least one record was read.

With --json each record is a JSON object on a line of its own:
  {"lsn":"0/16B9188","end":"0/16B91D0","prev":"0/16B9150","rmgr":"Heap",
   "type":"INSERT","info":0,"xid":735,"rec_len":59,"tot_len":59,"fpi_len":0,
   "blocks":[{"id":0,"rel":"1663/5/16384","fork":"main","blk":0,"fpw":false,
   "will_init":false}]}
A block with "fpw":true also has "compression" (none, pglz, lz4 or zstd) and
"apply" (false for an image kept only for wal_consistency_checking).

With --stats nothing is printed per record: instead a table counts the records
by type (rmgr/type, most frequent first) and says what the page server's WAL
ingest does with each type: "ingested", "ignored" (it changes nothing a
compute reads), or "UNSUPPORTED" with the reason (docs/wal-records.md lists
every type). The exit status is 1 if any record is unsupported, so a script
can check that the page server can ingest some WAL. With --stats --json the
summary is one JSON object:
  {"records":1234,"start":"0/1511AD8","end":"0/16B9188","types":[{"rmgr":"Heap",
   "type":"INSERT","info":0,"count":700,"handling":"ingested","how":"..."}],
   "ingested":1200,"ignored":34,"unsupported":0}

Examples:
  zenith waldump /var/lib/postgresql/15/main/pg_wal
  zenith waldump --stats /var/lib/postgresql/15/main/pg_wal
  zenith waldump --start 0/16B9188 --json pg_wal | jq -r .rmgr | sort | uniq -c`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per record (with --stats: the summary as one JSON object)"},
			&cli.BoolFlag{Name: "stats", Usage: "print a count per record type and what the page server does with each; exit 1 if any is unsupported"},
			&cli.StringFlag{Name: "start", Usage: "start at the first record at or after `LSN`"},
			&cli.StringFlag{Name: "end", Usage: "stop before the first record that does not end by `LSN`"},
		},
		Action: runWaldump,
	}
}

func runWaldump(c *cli.Context) error {
	if c.NArg() == 0 {
		return fmt.Errorf("waldump: give WAL segment files or directories (see zenith waldump --help)")
	}
	var opts pgdata.WALReadOptions
	for _, f := range []struct {
		name string
		lsn  *pgdata.LSN
	}{{"start", &opts.Start}, {"end", &opts.End}} {
		if s := c.String(f.name); s != "" {
			lsn, err := pgdata.ParseLSN(s)
			if err != nil {
				return fmt.Errorf("waldump: --%s: %w", f.name, err)
			}
			*f.lsn = lsn
		}
	}
	r, err := pgdata.OpenWAL(c.Args().Slice(), opts)
	if err != nil {
		return fmt.Errorf("waldump: %w", err)
	}
	defer r.Close()
	first := func(lsn pgdata.LSN) {
		// As pg_waldump says when --start is not a record's start.
		if opts.Start != 0 && lsn != opts.Start && opts.Start.SegmentOffset(r.SegmentSize()) != 0 {
			fmt.Fprintf(c.App.ErrWriter, "waldump: first record is after %s, at %s, skipping over %d bytes\n", opts.Start, lsn, lsn-opts.Start)
		}
	}
	if c.Bool("stats") {
		return waldumpStats(c, r)
	}
	n, err := dumpRecords(c.App.Writer, r, c.Bool("json"), first)
	var end *pgdata.EndOfWALError
	if !errors.As(err, &end) {
		return fmt.Errorf("waldump: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("waldump: %s", end.Reason)
	}
	fmt.Fprintf(c.App.ErrWriter, "waldump: %d records; WAL ends at %s: %s\n", n, end.LSN, end.Reason)
	return nil
}

// waldumpStats is `zenith waldump --stats`: the summary of r's records.
func waldumpStats(c *cli.Context, r *pgdata.WALFileReader) error {
	s, err := countRecords(r)
	var end *pgdata.EndOfWALError
	if !errors.As(err, &end) {
		return fmt.Errorf("waldump: %w", err)
	}
	if s.Records == 0 {
		return fmt.Errorf("waldump: %s", end.Reason)
	}
	if c.Bool("json") {
		b, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("waldump: %w", err)
		}
		_, err = c.App.Writer.Write(append(b, '\n'))
		if err != nil {
			return fmt.Errorf("waldump: %w", err)
		}
	} else if err := writeStats(c.App.Writer, s); err != nil {
		return fmt.Errorf("waldump: %w", err)
	}
	fmt.Fprintf(c.App.ErrWriter, "waldump: WAL ends at %s: %s\n", end.LSN, end.Reason)
	if err := unsupportedError(s); err != nil {
		return fmt.Errorf("waldump: %w", err)
	}
	return nil
}

// dumpRecords prints every record r gives to w and returns how many it
// printed and the error that stopped it, an *EndOfWALError at the end of
// valid WAL. first is called with the first record's LSN.
func dumpRecords(w io.Writer, r *pgdata.WALFileReader, asJSON bool, first func(pgdata.LSN)) (int, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var line []byte
	n := 0
	for {
		rec, err := r.Next()
		if err != nil {
			if ferr := bw.Flush(); ferr != nil {
				return n, ferr
			}
			return n, err
		}
		if n == 0 {
			first(rec.LSN)
		}
		if asJSON {
			line = appendJSON(line[:0], rec)
		} else {
			line = appendText(line[:0], rec)
		}
		if _, err := bw.Write(line); err != nil {
			return n, err
		}
		n++
	}
}

// appendText formats rec as pg_waldump does, with the record type for its
// description: "rmgr: Heap        len (rec/tot):     59/    59, tx:
// 735, lsn: 0/016B9188, prev 0/016B9150, desc: INSERT, blkref #0: rel
// 1663/5/16384 blk 0".
func appendText(b []byte, rec *pgdata.Record) []byte {
	b = append(b, "rmgr: "...)
	b = appendPadded(b, rec.Rmgr().String(), 11)
	b = append(b, " len (rec/tot): "...)
	b = appendRight(b, strconv.AppendUint(nil, uint64(rec.RecLen()), 10), 6)
	b = append(b, '/')
	b = appendRight(b, strconv.AppendUint(nil, uint64(rec.Header.TotLen), 10), 6)
	b = append(b, ", tx: "...)
	b = appendRight(b, strconv.AppendUint(nil, uint64(rec.Header.Xid), 10), 10)
	b = append(b, ", lsn: "...)
	b = appendWaldumpLSN(b, rec.LSN)
	b = append(b, ", prev "...)
	b = appendWaldumpLSN(b, rec.Header.Prev)
	b = append(b, ", desc: "...)
	b = append(b, rec.TypeName()...)
	for i := range rec.Blocks {
		blk := &rec.Blocks[i]
		b = append(b, ", blkref #"...)
		b = strconv.AppendUint(b, uint64(blk.ID), 10)
		b = append(b, ": rel "...)
		b = appendRel(b, blk.Rel)
		if blk.Fork != pgdata.ForkMain {
			b = append(b, " fork "...)
			b = append(b, blk.Fork.String()...)
		}
		b = append(b, " blk "...)
		b = strconv.AppendUint(b, uint64(blk.Block), 10)
		if blk.HasImage {
			b = append(b, " FPW"...)
			if !blk.ApplyImage {
				b = append(b, " for WAL verification"...)
			}
		}
	}
	return append(b, '\n')
}

// appendJSON formats rec as one JSON object and a newline. The fields are
// few and fixed, so it is written by hand: no reflection per record.
func appendJSON(b []byte, rec *pgdata.Record) []byte {
	b = append(b, `{"lsn":"`...)
	b = append(b, rec.LSN.String()...)
	b = append(b, `","end":"`...)
	b = append(b, rec.EndLSN.String()...)
	b = append(b, `","prev":"`...)
	b = append(b, rec.Header.Prev.String()...)
	b = append(b, `","rmgr":`...)
	b = strconv.AppendQuote(b, rec.Rmgr().String())
	b = append(b, `,"type":`...)
	b = strconv.AppendQuote(b, rec.TypeName())
	b = append(b, `,"info":`...)
	b = strconv.AppendUint(b, uint64(rec.Header.Info), 10)
	b = append(b, `,"xid":`...)
	b = strconv.AppendUint(b, uint64(rec.Header.Xid), 10)
	if rec.TopXid != 0 {
		b = append(b, `,"top_xid":`...)
		b = strconv.AppendUint(b, uint64(rec.TopXid), 10)
	}
	b = append(b, `,"rec_len":`...)
	b = strconv.AppendUint(b, uint64(rec.RecLen()), 10)
	b = append(b, `,"tot_len":`...)
	b = strconv.AppendUint(b, uint64(rec.Header.TotLen), 10)
	b = append(b, `,"fpi_len":`...)
	b = strconv.AppendUint(b, uint64(rec.FPILen()), 10)
	b = append(b, `,"blocks":[`...)
	for i := range rec.Blocks {
		blk := &rec.Blocks[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = strconv.AppendUint(b, uint64(blk.ID), 10)
		b = append(b, `,"rel":"`...)
		b = appendRel(b, blk.Rel)
		b = append(b, `","fork":"`...)
		b = append(b, blk.Fork.String()...)
		b = append(b, `","blk":`...)
		b = strconv.AppendUint(b, uint64(blk.Block), 10)
		b = append(b, `,"fpw":`...)
		b = strconv.AppendBool(b, blk.HasImage)
		b = append(b, `,"will_init":`...)
		b = strconv.AppendBool(b, blk.WillInit)
		if blk.HasImage {
			b = append(b, `,"compression":"`...)
			b = append(b, blk.Compression()...)
			b = append(b, `","apply":`...)
			b = strconv.AppendBool(b, blk.ApplyImage)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// appendRel appends "spc/db/rel".
func appendRel(b []byte, r pgdata.RelFileNode) []byte {
	b = strconv.AppendUint(b, uint64(r.SpcNode), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(r.DbNode), 10)
	b = append(b, '/')
	return strconv.AppendUint(b, uint64(r.RelNode), 10)
}

// appendWaldumpLSN appends an LSN as pg_waldump prints it, "%X/%08X".
func appendWaldumpLSN(b []byte, l pgdata.LSN) []byte {
	b = appendHex(b, uint32(l>>32), 1)
	b = append(b, '/')
	return appendHex(b, uint32(l), 8)
}

// appendHex appends v in upper-case hex, zero-padded to width digits.
func appendHex(b []byte, v uint32, width int) []byte {
	var d [8]byte
	n := len(strconv.AppendUint(d[:0], uint64(v), 16))
	for ; n < width; n++ {
		b = append(b, '0')
	}
	for _, c := range strconv.AppendUint(d[:0], uint64(v), 16) {
		if c >= 'a' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// appendPadded appends s left-aligned in width columns.
func appendPadded(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return b
}

// appendRight appends s right-aligned in width columns.
func appendRight(b, s []byte, width int) []byte {
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}
