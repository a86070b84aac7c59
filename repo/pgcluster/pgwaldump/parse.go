package pgwaldump

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// Record is one WAL record as pg_waldump prints it.
type Record struct {
	LSN  pgdata.LSN
	Prev pgdata.LSN
	// Rmgr is the resource manager's name ("Heap", "Btree", ...).
	Rmgr string
	Xid  uint32
	// RecLen is pg_waldump's "rec" length: the total length minus the
	// stored length of every block image (XLogRecGetLen).
	RecLen uint32
	// TotLen is xl_tot_len.
	TotLen uint32
	// Desc is everything after "desc: ": the record type and the rmgr's
	// description, e.g. "INSERT off 2 flags 0x00".
	Desc   string
	Blocks []Block
}

// Block is one block reference of a record.
type Block struct {
	ID   int
	Rel  pgdata.RelFileNode
	Fork pgdata.ForkNumber
	Blk  pgdata.BlockNumber
	// FPW is set when the record carries a full-page image of the block.
	FPW bool
	// ForVerification is set when that image is there only for
	// wal_consistency_checking (pg_waldump's "FPW for WAL verification"):
	// redo does not apply it.
	ForVerification bool
	// Detailed reports whether the fields below were printed (only the -b
	// form prints them, and only for blocks with an image).
	Detailed   bool
	HoleOffset uint16
	HoleLength uint16
	// Compression is the image's compression method ("pglz", "lz4",
	// "zstd"), empty when the image is not compressed; CompressionSaved is
	// how many bytes compression saved.
	Compression      string
	CompressionSaved uint16
}

// ImageLen is the length of the block's image as stored in the record
// (bimg_len): the page less its hole less what compression saved. Only a
// Detailed block knows it; others give 0.
func (b Block) ImageLen() int {
	if !b.Detailed {
		return 0
	}
	return pgdata.BlockSize - int(b.HoleLength) - int(b.CompressionSaved)
}

// The line formats, from pg_waldump.c and xlogdesc.c of PostgreSQL 15.
var (
	recordRE = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), prev:? ([0-9A-F]+/[0-9A-F]+), desc: (.*)$`)
	// shortBlockRE matches the last short-form block reference of a line.
	shortBlockRE = regexp.MustCompile(`, blkref #(\d+): rel (\d+)/(\d+)/(\d+)(?: fork (\w+))? blk (\d+)( FPW(?: for WAL verification)?)?$`)
	// detailedBlockRE matches a -b block line (without its leading tab).
	detailedBlockRE = regexp.MustCompile(`^blkref #(\d+): rel (\d+)/(\d+)/(\d+) fork (\w+) blk (\d+)(?: \(FPW( for WAL verification)?\); hole: offset: (\d+), length: (\d+)(?:, compression saved: (\d+), method: (\w+))?)?$`)
	skipRE          = regexp.MustCompile(`^first record is after ([0-9A-F]+/[0-9A-F]+), at ([0-9A-F]+/[0-9A-F]+), skipping over \d+ bytes?$`)
)

// Parser reads pg_waldump's standard output one record at a time.
type Parser struct {
	sc      *bufio.Scanner
	line    int
	pending *Record // the record being assembled
	// FirstRecord is set when pg_waldump said it had to skip from the
	// requested start to the first record ("first record is after ...").
	FirstRecord pgdata.LSN
}

// NewParser returns a Parser reading r.
func NewParser(r io.Reader) *Parser {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	return &Parser{sc: sc}
}

// Next returns the next record, or io.EOF after the last one.
func (p *Parser) Next() (Record, error) {
	for p.sc.Scan() {
		p.line++
		text := p.sc.Text()
		switch {
		case strings.HasPrefix(text, "rmgr: "):
			rec, err := parseRecordLine(text)
			if err != nil {
				return Record{}, fmt.Errorf("pg_waldump output line %d: %w", p.line, err)
			}
			prev := p.pending
			p.pending = &rec
			if prev != nil {
				return *prev, nil
			}
		case strings.HasPrefix(text, "\tblkref #"):
			if p.pending == nil {
				return Record{}, fmt.Errorf("pg_waldump output line %d: block reference before any record: %q", p.line, text)
			}
			b, err := parseDetailedBlock(text[1:])
			if err != nil {
				return Record{}, fmt.Errorf("pg_waldump output line %d: %w", p.line, err)
			}
			p.pending.Blocks = append(p.pending.Blocks, b)
		case p.pending == nil && skipRE.MatchString(text):
			m := skipRE.FindStringSubmatch(text)
			first, err := pgdata.ParseLSN(m[2])
			if err != nil {
				return Record{}, fmt.Errorf("pg_waldump output line %d: %w", p.line, err)
			}
			p.FirstRecord = first
		case p.pending != nil && len(p.pending.Blocks) == 0:
			// An rmgr description that itself spans lines.
			p.pending.Desc += "\n" + text
		default:
			return Record{}, fmt.Errorf("pg_waldump output line %d: unexpected line %q", p.line, text)
		}
	}
	if err := p.sc.Err(); err != nil {
		return Record{}, fmt.Errorf("read pg_waldump output: %w", err)
	}
	if p.pending != nil {
		rec := *p.pending
		p.pending = nil
		return rec, nil
	}
	return Record{}, io.EOF
}

// ParseAll parses every record of pg_waldump's output.
func ParseAll(r io.Reader) ([]Record, error) {
	p := NewParser(r)
	var recs []Record
	for {
		rec, err := p.Next()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
	}
}

func parseRecordLine(text string) (Record, error) {
	m := recordRE.FindStringSubmatch(text)
	if m == nil {
		return Record{}, fmt.Errorf("not a pg_waldump record line: %q", text)
	}
	var rec Record
	var err error
	rec.Rmgr = m[1]
	nums := [...]struct {
		s   string
		dst *uint32
	}{{m[2], &rec.RecLen}, {m[3], &rec.TotLen}, {m[4], &rec.Xid}}
	for _, n := range nums {
		v, err := strconv.ParseUint(n.s, 10, 32)
		if err != nil {
			return Record{}, fmt.Errorf("record line %q: %w", text, err)
		}
		*n.dst = uint32(v)
	}
	if rec.LSN, err = pgdata.ParseLSN(m[5]); err != nil {
		return Record{}, err
	}
	if rec.Prev, err = pgdata.ParseLSN(m[6]); err != nil {
		return Record{}, err
	}
	desc := m[7]
	// Short-form block references end the line; peel them off from the
	// right so that the description keeps whatever text it has.
	var blocks []Block
	for {
		bm := shortBlockRE.FindStringSubmatchIndex(desc)
		if bm == nil {
			break
		}
		sub := func(i int) string {
			if bm[2*i] < 0 {
				return ""
			}
			return desc[bm[2*i]:bm[2*i+1]]
		}
		fork := sub(5)
		if fork == "" {
			fork = "main"
		}
		b, err := newBlock(sub(1), sub(2), sub(3), sub(4), fork, sub(6))
		if err != nil {
			return Record{}, fmt.Errorf("record line %q: %w", text, err)
		}
		if img := sub(7); img != "" {
			b.FPW = true
			b.ForVerification = strings.HasSuffix(img, "verification")
		}
		blocks = append([]Block{b}, blocks...)
		desc = desc[:bm[0]]
	}
	rec.Desc = strings.TrimRight(desc, " ")
	rec.Blocks = blocks
	return rec, nil
}

func parseDetailedBlock(text string) (Block, error) {
	m := detailedBlockRE.FindStringSubmatch(text)
	if m == nil {
		return Block{}, fmt.Errorf("not a pg_waldump block line: %q", text)
	}
	b, err := newBlock(m[1], m[2], m[3], m[4], m[5], m[6])
	if err != nil {
		return Block{}, fmt.Errorf("block line %q: %w", text, err)
	}
	if m[8] == "" {
		return b, nil
	}
	b.FPW, b.Detailed = true, true
	b.ForVerification = m[7] != ""
	off, err1 := strconv.ParseUint(m[8], 10, 16)
	length, err2 := strconv.ParseUint(m[9], 10, 16)
	if err1 != nil || err2 != nil {
		return Block{}, fmt.Errorf("block line %q: bad hole", text)
	}
	b.HoleOffset, b.HoleLength = uint16(off), uint16(length)
	if m[10] != "" {
		saved, err := strconv.ParseUint(m[10], 10, 16)
		if err != nil {
			return Block{}, fmt.Errorf("block line %q: bad compression saved: %w", text, err)
		}
		b.CompressionSaved = uint16(saved)
		b.Compression = m[11]
	}
	return b, nil
}

func newBlock(id, spc, db, rel, fork, blk string) (Block, error) {
	var b Block
	var nums [5]uint64
	for i, s := range []string{id, spc, db, rel, blk} {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return Block{}, err
		}
		nums[i] = v
	}
	f, err := pgdata.ParseFork(fork)
	if err != nil {
		return Block{}, err
	}
	b.ID = int(nums[0])
	b.Rel = pgdata.RelFileNode{SpcNode: uint32(nums[1]), DbNode: uint32(nums[2]), RelNode: uint32(nums[3])}
	b.Fork = f
	b.Blk = uint32(nums[4])
	return b, nil
}
