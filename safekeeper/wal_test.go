package safekeeper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/repo/walseg"
)

// walTestSegSize is the smallest WAL segment size: writes cross files.
const walTestSegSize = 1 << 20

// The "span" sample of repo/pgdata: 1 MiB segments 7 to 9 of a real
// PostgreSQL 15, from a record in segment 7, with a 100 KB record from
// segment 7 into 8, an XLOG_SWITCH in 8, and zeros after the last record
// in 9.
const (
	spanStart  = pgdata.LSN(0x7FB158)
	spanEnd    = pgdata.LSN(0x902808) // pg_waldump: invalid record length at 0/902808
	spanSwitch = pgdata.LSN(0x813A50)
	spanLast   = pgdata.LSN(0x9000A0) // the last record, 10 KB
)

// spanWAL returns the sample's bytes [from, to).
func spanWAL(t *testing.T, from, to pgdata.LSN) []byte {
	t.Helper()
	var all []byte
	for seg := uint64(7); seg <= 9; seg++ {
		b, err := os.ReadFile(filepath.Join("../repo/pgdata/testdata/wal/span", pgdata.WALFileName(1, seg, walTestSegSize)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	base := pgdata.LSN(7 * walTestSegSize)
	return all[from-base : to-base]
}

// TestWALFilesFaults runs a safekeeper's WAL files, holding real WAL, on
// a file system that crashes and fails: what sync reported survives a
// crash, and the end found again is the end of the last complete record;
// a failed fsync never advances the flush LSN, now or later; a truncation
// (an election's cut of diverged WAL) interrupted by a crash at any
// file-system operation reopens at the old end or the cut, with the bytes
// below intact.
func TestWALFilesFaults(t *testing.T) {
	setup := func(t *testing.T, fs vfs.FS, upTo pgdata.LSN) *walFiles {
		t.Helper()
		w, err := openWAL(fs, "/tl", walTestSegSize, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.setBegin(spanStart)
		if err := w.write(spanStart, spanWAL(t, spanStart, upTo)); err != nil {
			t.Fatal(err)
		}
		if flush, err := w.sync(); err != nil || flush != upTo {
			t.Fatalf("sync = %v, %v", flush, err)
		}
		return w
	}
	reopen := func(t *testing.T, fs vfs.FS) *walFiles {
		t.Helper()
		w, err := openWAL(fs, "/tl", walTestSegSize, spanStart)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// check reads back [spanStart, w.end) and compares it with the sample.
	check := func(t *testing.T, w *walFiles) {
		t.Helper()
		b := make([]byte, w.end-spanStart)
		if err := w.readAt(b, spanStart); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, spanWAL(t, spanStart, w.end)) {
			t.Fatalf("WAL [%v, %v) differs from what was written", spanStart, w.end)
		}
	}

	for _, tc := range []struct {
		name          string
		synced, extra pgdata.LSN // synced up to, then written unsynced up to
		want          pgdata.LSN
	}{
		{"crash after sync", spanLast, spanEnd, spanLast},
		{"crash with the flush LSN inside a record", spanLast + 3000, spanEnd, spanLast},
		{"crash after an unsynced write into a new segment", spanSwitch + 100, spanLast, 0x900000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			w := setup(t, mem, tc.synced)
			if err := w.write(w.end, spanWAL(t, w.end, tc.extra)); err != nil {
				t.Fatal(err)
			}
			mem.Crash()
			w.closeAll()
			mem.Restart()
			w = reopen(t, mem)
			if w.end != tc.want || w.synced != tc.want || w.begin != spanStart {
				t.Errorf("reopened at [%v, %v) (synced %v), want [%v, %v)", w.begin, w.end, w.synced, spanStart, tc.want)
			}
			check(t, w)
			// The WAL goes on from there, and is found again.
			if err := w.write(w.end, spanWAL(t, w.end, spanEnd)); err != nil {
				t.Fatal(err)
			}
			if _, err := w.sync(); err != nil {
				t.Fatal(err)
			}
			w.closeAll()
			if w = reopen(t, mem); w.end != spanEnd {
				t.Errorf("after writing on: reopened at %v, want %v", w.end, spanEnd)
			}
			check(t, w)
		})
	}

	t.Run("failed fsync", func(t *testing.T) {
		fs := vfs.NewFaulty(vfs.NewMem())
		w := setup(t, fs, spanLast)
		synced := w.synced
		if err := w.write(w.end, spanWAL(t, w.end, spanEnd)); err != nil {
			t.Fatal(err)
		}
		fs.SetRule(vfs.FailOnce(vfs.OpSync, func(string) bool { return true }))
		if flush, err := w.sync(); !errors.Is(err, walseg.ErrBroken) || flush != synced {
			t.Fatalf("sync with a failing fsync = %v, %v; want %v and ErrBroken", flush, err, synced)
		}
		fs.SetRule(nil)
		if flush, err := w.sync(); err == nil || flush != synced {
			t.Errorf("sync after a failed fsync = %v, %v; want the old flush LSN %v and an error", flush, err, synced)
		}
	})

	cut := spanSwitch
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		w := setup(t, fs, spanEnd)
		end := w.end
		w.closeAll() // waits for the spare's fill, whose operations are not the truncation's
		fs.SetRule(vfs.CrashAt(mem, step))
		err := w.truncate(cut)
		fs.SetRule(nil)
		if err == nil {
			mem.Crash()
		}
		w.closeAll()
		mem.Restart()
		w = reopen(t, mem)
		if w.end != end && w.end != cut {
			t.Fatalf("truncation crashed at operation %d: reopened WAL ends at %v, neither the old end %v nor the cut %v", step, w.end, end, cut)
		}
		check(t, w)
		if err == nil {
			if w.end != cut {
				t.Errorf("completed truncation reopens at %v, want %v", w.end, cut)
			}
			t.Logf("a crash at each of %d operations of a truncation reopened at the old end or the cut", step-1)
			return
		}
	}
}

// TestWALFilesKilledThenCrashed: a safekeeper killed after writing WAL
// into a new segment, before its sync, leaves the segment's file renamed
// into place in the page cache only. Opened again, it fsyncs what the
// killed process wrote and reports that as its flush LSN: a machine crash
// after that must keep all of it, the file's name included.
func TestWALFilesKilledThenCrashed(t *testing.T) {
	mem := vfs.NewMem()
	// Each process is killed before the background fill of walseg's
	// next spare segment got anywhere (its temporary file is refused):
	// the fill's fsync of the directory would commit the renames too.
	fs := vfs.NewFaulty(mem)
	w, err := openWAL(fs, "/tl", walTestSegSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.setBegin(spanStart)
	if err := w.write(spanStart, spanWAL(t, spanStart, spanSwitch+100)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sync(); err != nil {
		t.Fatal(err)
	}
	w.closeAll() // waits for the spare of segment 9
	fs.SetRule(func(op vfs.Op, name string) error {
		if op == vfs.OpCreate && strings.HasSuffix(name, ".cut") {
			return fmt.Errorf("killed: %w", vfs.ErrInjected)
		}
		return nil
	})
	if w, err = openWAL(fs, "/tl", walTestSegSize, spanStart); err != nil {
		t.Fatal(err)
	}
	if err := w.write(w.end, spanWAL(t, w.end, spanEnd)); err != nil { // into segment 9
		t.Fatal(err)
	}
	w.closeAll() // killed: the kernel keeps the writes and the renames

	w, err = openWAL(fs, "/tl", walTestSegSize, spanStart)
	if err != nil {
		t.Fatal(err)
	}
	if w.synced != spanEnd {
		t.Fatalf("reopened after the kill with flush LSN %v, want %v", w.synced, spanEnd)
	}
	acked := w.synced // what the safekeeper now reports
	w.closeAll()
	mem.Crash()
	mem.Restart()

	w, err = openWAL(mem, "/tl", walTestSegSize, spanStart)
	if err != nil {
		t.Fatal(err)
	}
	if w.end < acked {
		t.Fatalf("after a machine crash the WAL ends at %v, below the flush LSN %v reported before it", w.end, acked)
	}
	b := make([]byte, acked-spanStart)
	if err := w.readAt(b, spanStart); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, spanWAL(t, spanStart, acked)) {
		t.Fatal("the WAL below the reported flush LSN changed")
	}
}
