package walreceiver

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/repo/walseg"
)

// TestWALStoreFaults runs the page server's WAL store on a file system
// that crashes and fails, with the real WAL of the span sample: what Sync
// reported survives a crash and unsynced bytes never count; a failed
// fsync never advances Flushed, now or later; a Truncate interrupted by a
// crash at any file-system operation reopens at the old end or at the
// cut, with every stored byte equal to the sample's.
func TestWALStoreFaults(t *testing.T) {
	wal := spanWAL(t)
	recs := spanRecords(t, wal)
	open := func(t *testing.T, fs vfs.FS) *WALStore {
		t.Helper()
		s, err := OpenWALStore(fs, "/wal", spanSegSize, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// fill stores the sample up to its last complete record and syncs.
	fill := func(t *testing.T, fs vfs.FS) *WALStore {
		t.Helper()
		s := open(t, fs)
		if err := s.Init(spanStart, spanPrev); err != nil {
			t.Fatal(err)
		}
		writeChunks(t, s, spanStart, wal[:spanEnd-spanStart], rand.New(rand.NewPCG(3, 4)))
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		return s
	}
	same := func(t *testing.T, s *WALStore) {
		t.Helper()
		if got := storedBytes(t, s); !bytes.Equal(got, wal[:len(got)]) {
			t.Fatalf("stored WAL [%v, %v) differs from the sample", s.Start(), s.End())
		}
	}

	t.Run("crash", func(t *testing.T) {
		mem := vfs.NewMem()
		s := fill(t, mem)
		s.Close()
		s = open(t, mem)
		// Cut back to the 100 KB record's end, then write the rest
		// again without a Sync: a crash loses it.
		mid := recs[2].LSN
		if err := s.Truncate(mid); err != nil {
			t.Fatal(err)
		}
		writeChunks(t, s, mid, wal[mid-spanStart:spanEnd-spanStart], rand.New(rand.NewPCG(5, 6)))
		mem.Crash()
		s.Close()
		mem.Restart()
		s = open(t, mem)
		if s.End() != mid || s.Flushed() != mid {
			t.Errorf("after a crash: end %v, flushed %v; want the synced %v", s.End(), s.Flushed(), mid)
		}
		same(t, s)
	})

	t.Run("failed fsync", func(t *testing.T) {
		fs := vfs.NewFaulty(vfs.NewMem())
		s := open(t, fs)
		if err := s.Init(spanStart, spanPrev); err != nil {
			t.Fatal(err)
		}
		writeChunks(t, s, spanStart, wal[:spanSwitch-spanStart], rand.New(rand.NewPCG(7, 8)))
		fs.SetRule(vfs.FailOnce(vfs.OpSync, func(string) bool { return true }))
		if err := s.Sync(); !errors.Is(err, walseg.ErrBroken) {
			t.Fatalf("Sync with a failing fsync = %v, want ErrBroken", err)
		}
		fs.SetRule(nil)
		if err := s.Sync(); err == nil {
			t.Error("Sync after a failed fsync succeeded")
		}
		if s.Flushed() != spanStart {
			t.Errorf("Flushed = %v after a failed fsync, want the start %v", s.Flushed(), spanStart)
		}
	})

	cut := spanSwitch
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		s := fill(t, fs)
		end := s.End()
		fs.SetRule(vfs.CrashAt(mem, step))
		err := s.Truncate(cut)
		fs.SetRule(nil)
		if err == nil {
			mem.Crash()
		}
		s.Close()
		mem.Restart()
		s = open(t, mem)
		if s.End() != end && s.End() != cut {
			t.Fatalf("Truncate crashed at operation %d: reopened at %v, neither the old end %v nor the cut %v", step, s.End(), end, cut)
		}
		same(t, s)
		s.Close()
		if err == nil {
			t.Logf("a crash at each of the %d operations of a Truncate reopened at the old end or the cut", step-1)
			return
		}
	}
}
