package control_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgwaldump"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestWaldumpOracle is the WAL decoder's oracle test: a real PostgreSQL 15
// runs the mixed workload once per wal_compression setting, and `zenith
// waldump --json` must agree with pg_waldump on every record of it (LSN,
// prev, rmgr, xid, lengths, every block reference and whether it carries a
// full-page image), read from a start LSN noted before the workload to the
// end of the WAL, and again from a record boundary in the middle of a
// segment. Every full-page image the decoder extracts must be a page with
// a sane header.
func TestWaldumpOracle(t *testing.T) {
	bin := zenithtest.Binary(t)
	for _, compression := range []string{"off", "pglz", "lz4", "zstd"} {
		t.Run("wal_compression="+compression, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			w := writeWorkloadWAL(ctx, t, compression)

			want, err := pgwaldump.Run(ctx, pgwaldump.Options{BinDir: w.binDir, WALDir: w.walDir, Start: w.start})
			if err != nil {
				t.Fatal(err)
			}
			checkOracleRun(t, w, want)

			t.Run("all records", func(t *testing.T) {
				got := zenithWaldump(ctx, t, bin, w.walDir, w.start)
				oracle := fromPGWaldump(want.Records)
				compareRecords(t, "from "+w.start.String(), got, oracle)
				checkRmgrsPresent(t, got, oracle)
			})
			t.Run("from mid-segment", func(t *testing.T) {
				mid := midSegmentStart(t, want.Records)
				wantMid, err := pgwaldump.Run(ctx, pgwaldump.Options{BinDir: w.binDir, WALDir: w.walDir, Start: mid})
				if err != nil {
					t.Fatal(err)
				}
				if wantMid.FirstRecord != 0 || len(wantMid.Records) == 0 || wantMid.Records[0].LSN != mid {
					t.Fatalf("pg_waldump does not start at record %v (skipped to %v)", mid, wantMid.FirstRecord)
				}
				gotMid := zenithWaldump(ctx, t, bin, w.walDir, mid)
				compareRecords(t, "from mid-segment "+mid.String(), gotMid, fromPGWaldump(wantMid.Records))
			})
			t.Run("page images", func(t *testing.T) {
				checkPageImages(t, w, compression)
			})
		})
	}
}

// workloadWAL is the WAL of one workload run, in a stopped cluster.
type workloadWAL struct {
	binDir, walDir string
	// start is the LSN noted before the workload (a checkpoint record);
	// shutdown is the shutdown checkpoint's LSN, the last record.
	start, shutdown pgdata.LSN
}

// writeWorkloadWAL runs the mixed workload on a new cluster with the given
// wal_compression and stops the cluster cleanly.
func writeWorkloadWAL(ctx context.Context, t *testing.T, compression string) workloadWAL {
	settings := workload.Settings()
	settings["wal_compression"] = compression
	settings["fsync"] = "off" // a throw-away cluster; WAL contents do not change
	c := pgtest.Start(t, settings)
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var startText string
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT checkpoint_lsn::text FROM pg_control_checkpoint()").Scan(&startText); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	start, err := pgdata.ParseLSN(startText)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := workload.Run(ctx, c.ConnString("postgres"), workload.Options{Seed: 42}); err != nil {
		t.Fatalf("workload: %v", err)
	}
	if err := c.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	control, err := c.ControlData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shutdown, err := pgdata.ParseLSN(control["Latest checkpoint location"])
	if err != nil {
		t.Fatalf("pg_controldata: %v", err)
	}
	return workloadWAL{binDir: c.BinDir(), walDir: filepath.Join(c.DataDir(), "pg_wal"), start: start, shutdown: shutdown}
}

// checkOracleRun checks that pg_waldump read the whole workload: from the
// noted start to the shutdown checkpoint, at least 100,000 records.
func checkOracleRun(t *testing.T, w workloadWAL, res *pgwaldump.Result) {
	t.Helper()
	recs := res.Records
	if len(recs) < 100_000 {
		t.Fatalf("pg_waldump read %d records, want >= 100000", len(recs))
	}
	if recs[0].LSN != w.start {
		t.Fatalf("pg_waldump's first record is at %v, want the start %v", recs[0].LSN, w.start)
	}
	last := recs[len(recs)-1]
	if last.LSN != w.shutdown || !strings.HasPrefix(last.Desc, "CHECKPOINT_SHUTDOWN") {
		t.Fatalf("pg_waldump's last record is %v %s %q, want the shutdown checkpoint at %v (it stopped with: %s)",
			last.LSN, last.Rmgr, last.Desc, w.shutdown, res.EndOfWAL)
	}
	t.Logf("pg_waldump: %d records from %v to %v", len(recs), w.start, last.LSN)
}

// oracleRecord is what both tools must agree on for a record. Type, and
// a block's Compression and Apply, are compared only when zenith prints
// them (they are beyond the fields the issue requires).
type oracleRecord struct {
	LSN, Prev           pgdata.LSN
	Rmgr                string
	Xid, RecLen, TotLen uint32
	Blocks              []oracleBlock
	// Type is the record type as pg_waldump's rm_identify names it, e.g.
	// "INSERT+INIT".
	Type string
}

type oracleBlock struct {
	Rel  string
	Fork string
	Blk  uint32
	FPW  bool
	// HasImageInfo says Compression and Apply are known.
	HasImageInfo bool
	// Compression is none, pglz, lz4 or zstd for an image.
	Compression string
	// Apply is false for an image kept only for wal_consistency_checking.
	Apply bool
}

func fromPGWaldump(recs []pgwaldump.Record) []oracleRecord {
	out := make([]oracleRecord, len(recs))
	for i, r := range recs {
		typ, _, _ := strings.Cut(r.Desc, " ")
		o := oracleRecord{LSN: r.LSN, Prev: r.Prev, Rmgr: r.Rmgr, Xid: r.Xid, RecLen: r.RecLen, TotLen: r.TotLen, Type: typ}
		for _, b := range r.Blocks {
			ob := oracleBlock{Rel: b.Rel.String(), Fork: b.Fork.String(), Blk: b.Blk, FPW: b.FPW}
			if b.FPW && b.Detailed {
				ob.HasImageInfo, ob.Compression, ob.Apply = true, b.Compression, !b.ForVerification
				if ob.Compression == "" {
					ob.Compression = "none"
				}
			}
			o.Blocks = append(o.Blocks, ob)
		}
		out[i] = o
	}
	return out
}

// zenithJSON is one line of `zenith waldump --json`; pointers tell a
// missing field from a zero one.
type zenithJSON struct {
	LSN    *pgdata.LSN `json:"lsn"`
	Prev   *pgdata.LSN `json:"prev"`
	Rmgr   *string     `json:"rmgr"`
	Xid    *uint32     `json:"xid"`
	RecLen *uint32     `json:"rec_len"`
	TotLen *uint32     `json:"tot_len"`
	Blocks *[]struct {
		Rel         *string `json:"rel"`
		Fork        *string `json:"fork"`
		Blk         *uint32 `json:"blk"`
		FPW         *bool   `json:"fpw"`
		Compression *string `json:"compression"`
		Apply       *bool   `json:"apply"`
	} `json:"blocks"`
	Type *string `json:"type"`
}

// zenithWaldump runs `zenith waldump --json --start start walDir` and
// parses every line.
func zenithWaldump(ctx context.Context, t *testing.T, bin, walDir string, start pgdata.LSN) []oracleRecord {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, "waldump", "--json", "--start", start.String(), walDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var recs []oracleRecord
	var parseErr error
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for line := 1; parseErr == nil && sc.Scan(); line++ {
		r, err := parseZenithLine(sc.Bytes())
		if err != nil {
			parseErr = fmt.Errorf("line %d %q: %w", line, sc.Text(), err)
			break
		}
		recs = append(recs, r)
	}
	if parseErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if parseErr != nil {
		t.Fatalf("zenith waldump --json: %v", parseErr)
	}
	if waitErr != nil {
		t.Fatalf("zenith waldump --json --start %v %s: %v\nstderr: %s", start, walDir, waitErr, stderr.String())
	}
	return recs
}

func parseZenithLine(line []byte) (oracleRecord, error) {
	var j zenithJSON
	if err := json.Unmarshal(line, &j); err != nil {
		return oracleRecord{}, err
	}
	if j.LSN == nil || j.Prev == nil || j.Rmgr == nil || j.Xid == nil || j.RecLen == nil || j.TotLen == nil || j.Blocks == nil {
		return oracleRecord{}, errors.New("want every field: lsn, prev, rmgr, xid, rec_len, tot_len, blocks")
	}
	r := oracleRecord{LSN: *j.LSN, Prev: *j.Prev, Rmgr: *j.Rmgr, Xid: *j.Xid, RecLen: *j.RecLen, TotLen: *j.TotLen}
	if j.Type != nil {
		r.Type = *j.Type
	}
	for i, b := range *j.Blocks {
		if b.Rel == nil || b.Fork == nil || b.Blk == nil || b.FPW == nil {
			return oracleRecord{}, fmt.Errorf("block %d: want every field: rel, fork, blk, fpw", i)
		}
		ob := oracleBlock{Rel: *b.Rel, Fork: *b.Fork, Blk: *b.Blk, FPW: *b.FPW}
		if b.Compression != nil && b.Apply != nil {
			ob.HasImageInfo, ob.Compression, ob.Apply = true, *b.Compression, *b.Apply
		}
		r.Blocks = append(r.Blocks, ob)
	}
	return r, nil
}

// compareRecords reports the first differences between zenith's records
// and pg_waldump's, field by field.
func compareRecords(t *testing.T, what string, got, want []oracleRecord) {
	t.Helper()
	const maxReported = 10
	var reported int
	n := min(len(got), len(want))
	for i := 0; i < n && reported < maxReported; i++ {
		for _, d := range recordDiffs(got[i], want[i]) {
			t.Errorf("%s: record #%d at %v (%s): %s", what, i, want[i].LSN, want[i].Rmgr, d)
			reported++
		}
	}
	if len(got) != len(want) {
		last := func(rs []oracleRecord) string {
			if len(rs) == 0 {
				return "none"
			}
			return rs[len(rs)-1].LSN.String()
		}
		t.Errorf("%s: zenith waldump printed %d records (last at %s), pg_waldump %d (last at %s)",
			what, len(got), last(got), len(want), last(want))
	}
	if reported == 0 && len(got) == len(want) {
		t.Logf("%s: zenith waldump and pg_waldump agree on all %d records", what, len(got))
	}
}

func recordDiffs(got, want oracleRecord) []string {
	var d []string
	field := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s: zenith %v, pg_waldump %v", name, g, w))
		}
	}
	field("lsn", got.LSN, want.LSN)
	field("prev", got.Prev, want.Prev)
	field("rmgr", got.Rmgr, want.Rmgr)
	field("xid", got.Xid, want.Xid)
	field("rec_len", got.RecLen, want.RecLen)
	field("tot_len", got.TotLen, want.TotLen)
	if got.Type != "" {
		field("type", got.Type, want.Type)
	}
	if len(got.Blocks) != len(want.Blocks) {
		d = append(d, fmt.Sprintf("blocks: zenith %+v, pg_waldump %+v", got.Blocks, want.Blocks))
		return d
	}
	for i := range got.Blocks {
		g, w := got.Blocks[i], want.Blocks[i]
		if !g.HasImageInfo {
			w.HasImageInfo, w.Compression, w.Apply = false, "", false
		}
		if g != w {
			d = append(d, fmt.Sprintf("block %d: zenith %+v, pg_waldump %+v", i, g, w))
		}
	}
	return d
}

// checkRmgrsPresent checks that zenith's output has every resource
// manager the workload exercises, and the oracle's the record types the
// issue names.
func checkRmgrsPresent(t *testing.T, recs, oracle []oracleRecord) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Rmgr]++
	}
	types := map[string]int{}
	for _, r := range oracle {
		types[r.Rmgr+"/"+r.Type]++
	}
	for _, typ := range []string{
		"Transaction/PREPARE", "Transaction/COMMIT_PREPARED", "Transaction/ABORT_PREPARED",
		"MultiXact/CREATE_ID", "Heap/LOCK", "Database/CREATE_WAL_LOG", "Database/CREATE_FILE_COPY",
		"Database/DROP", "Storage/TRUNCATE", "XLOG/SWITCH", "XLOG/FPI", "Heap2/MULTI_INSERT",
	} {
		if types[typ] == 0 {
			t.Errorf("no %s record in the workload's WAL", typ)
		}
	}
	for _, rmgr := range []string{
		"XLOG", "Transaction", "Storage", "Database", "MultiXact", "RelMap", "Standby",
		"Heap2", "Heap", "Btree", "Hash", "Gin", "Gist", "Sequence", "SPGist", "BRIN", "LogicalMessage",
	} {
		if seen[rmgr] == 0 {
			t.Errorf("no %s record in zenith waldump's output (it has %v)", rmgr, seen)
		}
	}
}

// midSegmentStart picks a record boundary from the middle of the WAL that
// is neither at a segment's start nor on its first page, preferably one
// on a page that begins with the tail of the record before it (so a
// reader must skip that continuation).
func midSegmentStart(t *testing.T, recs []pgwaldump.Record) pgdata.LSN {
	t.Helper()
	var fallback pgdata.LSN
	for i := len(recs) / 2; i < len(recs); i++ {
		lsn := recs[i].LSN
		if lsn.SegmentOffset(pgdata.WALSegmentSize) < pgdata.XLogBlockSize {
			continue
		}
		if fallback == 0 {
			fallback = lsn
		}
		prevPage := uint64(recs[i-1].LSN) / pgdata.XLogBlockSize
		if prevPage < uint64(lsn)/pgdata.XLogBlockSize {
			return lsn
		}
	}
	if fallback == 0 {
		t.Fatal("no record in the second half of the WAL is past its segment's first page")
	}
	return fallback
}

// checkPageImages decodes the WAL in-process and checks every full-page
// image: a page header with pd_lower <= pd_upper <= pd_special <= 8192
// and pd_lsn not after the record, and the compression method asked for.
func checkPageImages(t *testing.T, w workloadWAL, compression string) {
	t.Helper()
	r, err := pgdata.OpenWAL([]string{w.walDir}, pgdata.WALReadOptions{Start: w.start})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	methods := map[string]int{}
	var images, bad int
	for {
		rec, err := r.Next()
		var end *pgdata.EndOfWALError
		if errors.As(err, &end) {
			if end.LSN <= w.shutdown {
				t.Fatalf("decoder stopped at %v, before the shutdown checkpoint %v: %v", end.LSN, w.shutdown, err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range rec.Blocks {
			b := &rec.Blocks[i]
			if !b.HasImage {
				continue
			}
			images++
			methods[b.Compression()]++
			page, err := b.PageImage()
			if err == nil {
				err = checkPageHeader(page, rec.LSN)
			}
			if err != nil && bad < 10 {
				t.Errorf("record %v block %d (%v %v blk %d): image: %v", rec.LSN, b.ID, b.Rel, b.Fork, b.Block, err)
			}
			if err != nil {
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d full-page images are not valid pages", bad, images)
	}
	if images == 0 {
		t.Fatal("no full-page image in the WAL")
	}
	want := compression
	if want == "off" {
		want = "none"
	}
	for m, n := range methods {
		// PostgreSQL keeps an image uncompressed when compressing does not
		// make it smaller.
		if m != want && m != "none" {
			t.Errorf("%d images compressed with %s under wal_compression=%s", n, m, compression)
		}
	}
	if compression != "off" && methods[compression] == 0 {
		t.Errorf("no image compressed with %s under wal_compression=%s (%v)", compression, compression, methods)
	}
	t.Logf("%d full-page images, valid pages (%v)", images, methods)
}

// checkPageHeader checks a page's PageHeaderData (storage/bufpage.h).
func checkPageHeader(page []byte, recLSN pgdata.LSN) error {
	if len(page) != pgdata.BlockSize {
		return fmt.Errorf("%d bytes, want %d", len(page), pgdata.BlockSize)
	}
	pdLSN := pgdata.LSN(binary.LittleEndian.Uint32(page[0:]))<<32 | pgdata.LSN(binary.LittleEndian.Uint32(page[4:]))
	lower := binary.LittleEndian.Uint16(page[12:])
	upper := binary.LittleEndian.Uint16(page[14:])
	special := binary.LittleEndian.Uint16(page[16:])
	if lower > upper || upper > special || int(special) > pgdata.BlockSize {
		return fmt.Errorf("pd_lower %d, pd_upper %d, pd_special %d: want lower <= upper <= special <= %d", lower, upper, special, pgdata.BlockSize)
	}
	if pdLSN > recLSN {
		return fmt.Errorf("pd_lsn %v is after the record's LSN %v", pdLSN, recLSN)
	}
	return nil
}
