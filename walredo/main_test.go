package walredo

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// testDir is the scratch directory every test's Manager shares (one at a
// time: tests here do not run in parallel), so the template is initdb'd
// once per run.
var testDir string

// testExtension is the module built from pgext for this run.
var testExtension string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "zenith-walredo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Not 0700: the postgres OS user must reach the slots inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testDir = filepath.Join(dir, "walredo")
	if testExtension, err = buildExtension(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// buildExtension runs make in pgext (a no-op when it is up to date).
func buildExtension() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	binDir, err := pgcluster.FindBinDir(ctx, "")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", "pgext", "PG_CONFIG="+filepath.Join(binDir, "pg_config"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the walredo module: %v\n%s", err, out)
	}
	return filepath.Abs(filepath.Join("pgext", ExtensionFile))
}

// openTestManager opens a Manager on the shared directory; edit changes
// the configuration first. It is closed when the test ends.
func openTestManager(t testing.TB, edit func(*Config)) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = testDir
	cfg.Extension = testExtension
	if edit != nil {
		edit(&cfg)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: testLogWriter{t}, NoColor: true}).Level(zerolog.WarnLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Open(ctx, cfg, log)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// pids returns the pids of tenant's live processes.
func (m *Manager) pids(tenant string) []int {
	m.mu.Lock()
	pl := m.pools[tenant]
	m.mu.Unlock()
	if pl == nil {
		return nil
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var pids []int
	for _, p := range pl.procs {
		if !p.isDead() {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}

// testPage is an initialized, empty page (PageInit) with a marker byte.
func testPage(marker byte) []byte {
	p := make([]byte, pgdata.BlockSize)
	binary.LittleEndian.PutUint16(p[12:], 24)                 // pd_lower
	binary.LittleEndian.PutUint16(p[14:], pgdata.BlockSize)   // pd_upper
	binary.LittleEndian.PutUint16(p[16:], pgdata.BlockSize)   // pd_special
	binary.LittleEndian.PutUint16(p[18:], pgdata.BlockSize|4) // pd_pagesize_version
	p[pgdata.BlockSize-1] = marker
	return p
}

// fpiRecord builds an XLOG_FPI record carrying image (uncompressed, no
// hole) for each tag in turn, as log_newpages does.
func fpiRecord(image []byte, tags ...BufferTag) []byte {
	le := binary.LittleEndian
	var body []byte
	for i, tag := range tags {
		flags := byte(tag.Fork) | pgdata.BkpBlockHasImage
		if i > 0 {
			flags |= pgdata.BkpBlockSameRel
		}
		body = append(body, byte(i), flags, 0, 0)      // block id, fork_flags, data_length
		body = le.AppendUint16(body, pgdata.BlockSize) // bimg length
		body = le.AppendUint16(body, 0)                // hole_offset
		body = append(body, pgdata.BkpImageApply)      // bimg_info
		if i == 0 {
			body = le.AppendUint32(le.AppendUint32(le.AppendUint32(body, tag.Rel.SpcNode), tag.Rel.DbNode), tag.Rel.RelNode)
		}
		body = le.AppendUint32(body, tag.Block)
	}
	for range tags {
		body = append(body, image...)
	}
	rec := make([]byte, pgdata.XLogRecordHeaderSize, pgdata.XLogRecordHeaderSize+len(body))
	le.PutUint32(rec[0:], uint32(pgdata.XLogRecordHeaderSize+len(body)))
	rec[16] = 0xB0 // XLOG_FPI
	rec[17] = byte(pgdata.RmgrXLOG)
	return append(rec, body...)
}

// visibleRecord builds an XLOG_HEAP2_VISIBLE record, as log_heap_visible
// does: block 0 the map page, block 1 the heap page, neither with an image.
func visibleRecord(heap BufferTag) []byte {
	le := binary.LittleEndian
	body := []byte{0, byte(pgdata.ForkVM), 0, 0}
	body = le.AppendUint32(le.AppendUint32(le.AppendUint32(body, heap.Rel.SpcNode), heap.Rel.DbNode), heap.Rel.RelNode)
	body = le.AppendUint32(body, pgdata.VMBlock(heap.Block))
	body = append(body, 1, byte(pgdata.ForkMain)|pgdata.BkpBlockSameRel, 0, 0)
	body = le.AppendUint32(body, heap.Block)
	body = append(body, pgdata.XLRBlockIDDataShort, 5) // main data: xl_heap_visible
	body = le.AppendUint32(body, 700)                  // cutoff_xid
	body = append(body, pgdata.VMAllVisible)           // flags
	rec := make([]byte, pgdata.XLogRecordHeaderSize, pgdata.XLogRecordHeaderSize+len(body))
	le.PutUint32(rec[0:], uint32(pgdata.XLogRecordHeaderSize+len(body)))
	rec[16] = pgdata.XLogHeap2Visible
	rec[17] = byte(pgdata.RmgrHeap2)
	return append(rec, body...)
}

// pageLSN reads pd_lsn.
func pageLSN(p []byte) pgdata.LSN {
	return pgdata.LSN(uint64(binary.LittleEndian.Uint32(p[0:]))<<32 | uint64(binary.LittleEndian.Uint32(p[4:])))
}
