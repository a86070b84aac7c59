package safekeeper

import (
	"bytes"
	"errors"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/repo/walseg"
)

// walTestSegSize is the smallest WAL segment size: writes cross files.
const walTestSegSize = 1 << 20

// patterned is n bytes that differ at every offset from start.
func patterned(start pgdata.LSN, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		p := uint64(start) + uint64(i)
		b[i] = byte(p ^ p>>8 ^ p>>16)
	}
	return b
}

// TestWALFilesFaults runs a safekeeper's WAL files on a file system that
// crashes and fails: what sync reported survives a crash; a failed fsync
// never advances the flush LSN, now or later; a truncation (an election's
// cut of diverged WAL) interrupted by a crash at any file-system operation
// reopens at the old end or the cut, with the bytes below intact.
func TestWALFilesFaults(t *testing.T) {
	begin := pgdata.LSN(walTestSegSize + 4096)
	written := patterned(begin, 2*walTestSegSize)
	setup := func(t *testing.T, fs vfs.FS) *walFiles {
		t.Helper()
		w, err := openWAL(fs, "/tl", walTestSegSize)
		if err != nil {
			t.Fatal(err)
		}
		w.setBegin(begin)
		if err := w.write(begin, written); err != nil {
			t.Fatal(err)
		}
		if flush, err := w.sync(); err != nil || flush != begin+pgdata.LSN(len(written)) {
			t.Fatalf("sync = %v, %v", flush, err)
		}
		return w
	}
	reopen := func(t *testing.T, fs vfs.FS) *walFiles {
		t.Helper()
		w, err := openWAL(fs, "/tl", walTestSegSize)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// check reads back [from, w.end) and compares it with what was written.
	check := func(t *testing.T, w *walFiles, from pgdata.LSN) {
		t.Helper()
		b := make([]byte, w.end-from)
		if err := w.readAt(b, from); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, patterned(from, len(b))) {
			t.Fatalf("WAL [%v, %v) differs from what was written", from, w.end)
		}
	}

	t.Run("crash after sync", func(t *testing.T) {
		mem := vfs.NewMem()
		w := setup(t, mem)
		synced := w.synced
		if err := w.write(w.end, patterned(w.end, 5000)); err != nil {
			t.Fatal(err)
		}
		mem.Crash()
		w.closeAll()
		mem.Restart()
		w = reopen(t, mem)
		if w.end != synced || w.synced != synced {
			t.Errorf("reopened at end %v (synced %v), want the synced %v", w.end, w.synced, synced)
		}
		check(t, w, begin)
	})

	t.Run("failed fsync", func(t *testing.T) {
		fs := vfs.NewFaulty(vfs.NewMem())
		w := setup(t, fs)
		synced := w.synced
		if err := w.write(w.end, patterned(w.end, 5000)); err != nil {
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

	cut := begin + walTestSegSize/2
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		w := setup(t, fs)
		end := w.end
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
		check(t, w, begin)
		if err == nil {
			if w.end != cut {
				t.Errorf("completed truncation reopens at %v, want %v", w.end, cut)
			}
			t.Logf("a crash at each of %d operations of a truncation reopened at the old end or the cut", step-1)
			return
		}
	}
}
