package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/repo/pgdata"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of zenith waldump's output")

// walSamples are the real PostgreSQL 15 WAL samples of repo/pgdata.
const walSamples = "../repo/pgdata/testdata/wal"

// runZenith runs the zenith CLI in-process and returns its stdout, stderr
// and error.
func runZenith(args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	app := &cli.App{Name: "zenith", Commands: Commands(), Writer: &stdout, ErrWriter: &stderr}
	err := app.Run(append([]string{"zenith"}, args...))
	return stdout.String(), stderr.String(), err
}

// TestWaldumpGolden compares `zenith waldump` (text and --json) on the WAL
// samples with the golden files in testdata/waldump; -update rewrites
// them.
func TestWaldumpGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"off", []string{walSamples + "/off"}},
		{"lz4-json", []string{"--json", walSamples + "/lz4"}},
		{"span", []string{"--start", "0/7FB158", walSamples + "/span"}},
		{"span-json-end", []string{"--json", "--start", "0/7FB158", "--end", "0/900100", walSamples + "/span"}},
		{"off-inside-a-record", []string{"--start", "0/2006004", walSamples + "/off"}},
		{"off-stats", []string{"--stats", walSamples + "/off"}},
		{"span-stats-json", []string{"--stats", "--json", "--start", "0/7FB158", walSamples + "/span"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := runZenith(append([]string{"waldump"}, tt.args...)...)
			if err != nil {
				t.Fatalf("zenith waldump %v: %v", tt.args, err)
			}
			got := stdout + "--- stderr\n" + stderr
			golden := filepath.Join("testdata", "waldump", tt.name+".golden")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("zenith waldump %v differs from %s (run with -update if the change is right):\n%s",
					tt.args, golden, firstDiff(got, string(want)))
			}
		})
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n got " + gl + "\nwant " + wl
		}
	}
	return ""
}

// TestWaldumpJSONIsTheDecoder checks every --json line against the
// decoder's record: valid JSON, and the contract's fields.
func TestWaldumpJSONIsTheDecoder(t *testing.T) {
	dir := walSamples + "/zstd"
	stdout, _, err := runZenith("waldump", "--json", dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pgdata.OpenWAL([]string{dir}, pgdata.WALReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		var j struct {
			LSN, End, Prev pgdata.LSN
			Rmgr, Type     string
			Xid            uint32
			RecLen         uint32 `json:"rec_len"`
			TotLen         uint32 `json:"tot_len"`
			Blocks         []struct {
				Rel, Fork, Compression string
				Blk                    uint32
				FPW                    bool
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", lines, err, sc.Text())
		}
		rec, err := r.Next()
		if err != nil {
			t.Fatalf("line %d: the decoder has no record: %v", lines, err)
		}
		if j.LSN != rec.LSN || j.End != rec.EndLSN || j.Prev != rec.Header.Prev || j.Rmgr != rec.Rmgr().String() ||
			j.Type != rec.TypeName() || j.Xid != rec.Header.Xid || j.RecLen != rec.RecLen() || j.TotLen != rec.Header.TotLen ||
			len(j.Blocks) != len(rec.Blocks) {
			t.Fatalf("line %d: %s\ndoes not match the record at %s", lines, sc.Text(), rec.LSN)
		}
		for i, b := range j.Blocks {
			rb := rec.Blocks[i]
			if b.Rel != rb.Rel.String() || b.Fork != rb.Fork.String() || b.Blk != rb.Block || b.FPW != rb.HasImage ||
				(b.FPW && b.Compression != "zstd" && b.Compression != "none") {
				t.Fatalf("line %d block %d: %+v, record has %+v", lines, i, b, rb)
			}
		}
	}
	if lines < 100 {
		t.Errorf("%d lines, want the whole sample", lines)
	}
}

func TestWaldumpErrors(t *testing.T) {
	notWAL := filepath.Join(t.TempDir(), "000000010000000000000001")
	if err := os.WriteFile(notWAL, bytes.Repeat([]byte{0xAA}, 9000), 0o644); err != nil {
		t.Fatal(err)
	}
	// A segment whose first record is already invalid: no record at all.
	empty := filepath.Join(t.TempDir(), "000000010000000000000002")
	b, err := os.ReadFile(walSamples + "/off/000000010000000000000002")
	if err != nil {
		t.Fatal(err)
	}
	clear(b[pgdata.XLogLongPageHeaderSize:pgdata.XLogBlockSize])
	if err := os.WriteFile(empty, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		errHas string
	}{
		{"no arguments", nil, "give WAL segment files or directories"},
		{"not WAL", []string{notWAL}, "is not a WAL segment file of PostgreSQL 15"},
		{"not a WAL file name", []string{walSamples + "/off/pg_waldump.txt"}, "is not a WAL segment file name"},
		{"bad start", []string{"--start", "12345", walSamples + "/off"}, `--start: invalid LSN "12345"`},
		{"bad end", []string{"--end", "0/x", walSamples + "/off"}, "--end: invalid LSN"},
		{"no valid record", []string{empty}, "could not find a valid record after 0/2000000: invalid record length at 0/2000028: wanted 24, got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := runZenith(append([]string{"waldump"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("error = %v, want one containing %q", err, tt.errHas)
			}
			if stdout != "" {
				t.Errorf("printed %q, want nothing", stdout)
			}
		})
	}
}
