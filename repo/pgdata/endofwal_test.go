package pgdata

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pgWaldump runs the real pg_waldump on a segment file and returns the
// records it prints and the reason it gives for stopping.
func pgWaldump(t *testing.T, file string) ([]dumpedRecord, string) {
	t.Helper()
	bin := filepath.Join(pgBinDir(t), "pg_waldump")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // it exits 1 at the end of valid WAL
	var recs []dumpedRecord
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "rmgr: ") {
			recs = append(recs, parseDumpLine(t, sc.Text()))
		}
	}
	reason := ""
	if m := dumpErr.FindStringSubmatch(strings.TrimSpace(stderr.String())); m != nil {
		reason = m[1]
	}
	return recs, reason
}

// TestEndOfWALAsPGWaldump damages the "off" sample in the ways xlogreader
// detects the end of WAL and checks that the decoder stops after the same
// record as pg_waldump, for the same reason, reading files or a stream.
func TestEndOfWALAsPGWaldump(t *testing.T) {
	dir := filepath.Join("testdata", "wal", "off")
	files := sampleFiles(t, dir)
	orig, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	golden, _ := readGolden(t, dir)
	segStart := golden[0].lsn - LSN(golden[0].lsn.PageOffset())
	off := func(lsn LSN) int { return int(lsn - segStart) }
	le := binary.LittleEndian

	// A record in mid-page, and a record that continues on the next page.
	var mid, spanning dumpedRecord
	for i, r := range golden {
		if i > 20 && mid.lsn == 0 && r.lsn.PageOffset() > 100 && int(r.lsn.PageOffset())+int(r.totLen) < XLogBlockSize {
			mid = r
		}
		if i > 5 && spanning.lsn == 0 && int(r.lsn.PageOffset())+int(r.totLen) > XLogBlockSize+100 && r.lsn.PageOffset() < XLogBlockSize-100 {
			spanning = r
		}
	}
	if mid.lsn == 0 || spanning.lsn == 0 {
		t.Fatal("the sample lacks a record in mid-page or one spanning pages")
	}
	nextPage := off(spanning.lsn) - int(spanning.lsn.PageOffset()) + XLogBlockSize

	tests := []struct {
		name   string
		damage func(b []byte)
		reason string // what the end of WAL must say
	}{
		{"zero length", func(b []byte) { le.PutUint32(b[off(mid.lsn):], 0) }, "invalid record length"},
		{"short length", func(b []byte) { le.PutUint32(b[off(mid.lsn):], 20) }, "invalid record length"},
		{"payload damaged", func(b []byte) { b[off(mid.lsn)+XLogRecordHeaderSize+1] ^= 0x40 }, "incorrect resource manager data checksum"},
		{"wrong prev-link", func(b []byte) { le.PutUint64(b[off(mid.lsn)+8:], uint64(mid.prev)-8) }, "record with incorrect prev-link"},
		{"unknown rmgr", func(b []byte) { b[off(mid.lsn)+17] = 100 }, "invalid resource manager ID 100"},
		{"page magic", func(b []byte) { le.PutUint16(b[nextPage:], 0xD10D) }, "invalid magic number D10D"},
		{"page address", func(b []byte) { le.PutUint64(b[nextPage+8:], uint64(segStart)) }, "unexpected pageaddr"},
		{"page flags", func(b []byte) { le.PutUint16(b[nextPage+2:], 0x20) }, "invalid info bits"},
		{"no contrecord flag", func(b []byte) { le.PutUint16(b[nextPage+2:], 0) }, "there is no contrecord flag"},
		{"contrecord length", func(b []byte) { le.PutUint32(b[nextPage+16:], le.Uint32(b[nextPage+16:])+8) }, "invalid contrecord length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append([]byte{}, orig...)
			tt.damage(b)
			tmp := t.TempDir()
			file := filepath.Join(tmp, filepath.Base(files[0]))
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			got, end := readAllWAL(t, []string{file}, WALReadOptions{})
			if !strings.Contains(end.Reason, tt.reason) {
				t.Errorf("end of WAL %q, want %q", end.Reason, tt.reason)
			}
			if len(got) > 0 && end.LSN != got[len(got)-1].EndLSN {
				t.Errorf("end of WAL at %s, want the end of the last record, %s", end.LSN, got[len(got)-1].EndLSN)
			}
			stream, streamErr := decodeStream(t, NewWALDecoder(segStart, WALSegmentSize), b, func() int { return 5000 })
			if len(stream) != len(got) || streamErr.Error() != end.Error() {
				t.Errorf("streaming: %d records and %v; from the file: %d records and %v", len(stream), streamErr, len(got), end)
			}
			want, wantReason := pgWaldump(t, file)
			compareWithGolden(t, got, want)
			if end.Reason != wantReason {
				t.Errorf("end of WAL %q, pg_waldump says %q", end.Reason, wantReason)
			}
		})
	}
}

// TestEndOfFiles checks how reading files ends when they stop before the
// WAL does.
func TestEndOfFiles(t *testing.T) {
	span := sampleFiles(t, filepath.Join("testdata", "wal", "span"))
	offDir := filepath.Join("testdata", "wal", "off")
	offRecs, _ := readGolden(t, offDir)
	tests := []struct {
		name   string
		paths  []string
		opts   WALReadOptions
		reason string
	}{
		// The 100 kB record goes on in the missing second segment.
		{"missing segment", span[:1], WALReadOptions{Start: sampleStart(t, filepath.Join("testdata", "wal", "span"))},
			"continues past the end of the WAL read: there is no WAL file for segment 000000010000000000000008"},
		{"end position", []string{offDir}, WALReadOptions{End: offRecs[10].lsn}, "reached the end position " + offRecs[10].lsn.String()},
		{"end before the first record", []string{offDir}, WALReadOptions{Start: offRecs[10].lsn + 8, End: offRecs[10].lsn + 16},
			"could not find a valid record after " + (offRecs[10].lsn + 8).String() + ": record at " + offRecs[10].lsn.String() + " continues past the end of the WAL read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, end := readAllWAL(t, tt.paths, tt.opts)
			if !strings.Contains(end.Reason, tt.reason) {
				t.Errorf("end of WAL %q, want %q", end.Reason, tt.reason)
			}
		})
	}
	// A file cut inside a record: the WAL ends before that record.
	b, err := os.ReadFile(sampleFiles(t, offDir)[0])
	if err != nil {
		t.Fatal(err)
	}
	cut := offRecs[30]
	file := filepath.Join(t.TempDir(), filepath.Base(sampleFiles(t, offDir)[0]))
	segStart := offRecs[0].lsn - LSN(offRecs[0].lsn.PageOffset())
	if err := os.WriteFile(file, b[:int(cut.lsn-segStart)+10], 0o644); err != nil {
		t.Fatal(err)
	}
	got, end := readAllWAL(t, []string{file}, WALReadOptions{})
	if len(got) != 30 || end.LSN != cut.lsn || !strings.Contains(end.Reason, "short of the 16777216-byte segment") {
		t.Errorf("cut file: %d records, end at %s: %q; want 30 records, end at %s", len(got), end.LSN, end.Reason, cut.lsn)
	}
}

func TestOpenWALErrors(t *testing.T) {
	tmp := t.TempDir()
	notWAL := filepath.Join(tmp, "000000010000000000000001")
	if err := os.WriteFile(notWAL, bytes.Repeat([]byte("not WAL "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	offDir := filepath.Join("testdata", "wal", "off")
	tests := []struct {
		name   string
		paths  []string
		opts   WALReadOptions
		errHas string
	}{
		{"not WAL", []string{notWAL}, WALReadOptions{}, "is not a WAL segment file of PostgreSQL 15"},
		{"not a WAL file name", []string{filepath.Join(offDir, "pg_waldump.txt")}, WALReadOptions{}, "is not a WAL segment file name"},
		{"empty directory", []string{empty}, WALReadOptions{}, "holds no WAL segment files"},
		{"missing", []string{filepath.Join(tmp, "nope")}, WALReadOptions{}, "no such file"},
		{"start outside", []string{offDir}, WALReadOptions{Start: 0x10}, "is not inside the WAL files"},
		{"end before start", []string{offDir}, WALReadOptions{Start: 0x2000100, End: 0x2000000}, "is not after the start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := OpenWAL(tt.paths, tt.opts)
			if err == nil {
				r.Close()
				t.Fatalf("OpenWAL succeeded, want an error containing %q", tt.errHas)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("OpenWAL error = %v, want one containing %q", err, tt.errHas)
			}
			var eow *EndOfWALError
			if errors.As(err, &eow) {
				t.Errorf("OpenWAL error is an end of WAL: %v", err)
			}
		})
	}
}
