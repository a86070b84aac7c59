package walreceiver

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgdata"
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
		// Cut back to the 100 KB record's end, then write the rest of
		// its segment again without a Sync: a crash loses it. (Not
		// beyond: a preallocated store syncs what lies below a new
		// segment before it makes the segment's file.)
		mid := recs[2].LSN
		if err := s.Truncate(mid); err != nil {
			t.Fatal(err)
		}
		segEnd := s.segs.Start(mid.SegmentNo(spanSegSize) + 1)
		writeChunks(t, s, mid, wal[mid-spanStart:segEnd-spanStart], rand.New(rand.NewPCG(5, 6)))
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

	// A failed fsync after a good one: Recover cuts the store back to
	// the good one's end, the rest is written again and synced, and a
	// crash then keeps all of it. On the way the cut itself fails once
	// for a full disk (it copies the kept part of its segment): the
	// store then takes no writes until a Truncate at its end succeeds.
	t.Run("recover", func(t *testing.T) {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		s := open(t, fs)
		if err := s.Init(spanStart, spanPrev); err != nil {
			t.Fatal(err)
		}
		good := recs[3].LSN // in segment 8, after the 100 KB record
		writeChunks(t, s, spanStart, wal[:good-spanStart], rand.New(rand.NewPCG(9, 10)))
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		// Into segment 9: a new file the cut must remove.
		writeChunks(t, s, good, wal[:spanLast-spanStart][good-spanStart:], rand.New(rand.NewPCG(11, 12)))
		fs.SetRule(vfs.FailOnce(vfs.OpSync, func(string) bool { return true }))
		if err := s.Sync(); !errors.Is(err, walseg.ErrBroken) {
			t.Fatalf("Sync with a failing fsync = %v, want ErrBroken", err)
		}
		full := func(op vfs.Op, name string) error {
			if op == vfs.OpWrite && strings.HasSuffix(name, ".cut") {
				return &vfs.DiskFullError{Path: name, Err: syscall.ENOSPC}
			}
			return nil
		}
		fs.SetRule(full)
		from, to, err := s.Recover()
		if !vfs.IsDiskFull(err) {
			t.Fatalf("Recover on a full disk = %v, want a disk-full error", err)
		}
		if from != spanLast || to != good || s.End() != good || s.Flushed() != good {
			t.Errorf("Recover from %v to %v, End %v, Flushed %v; want from %v to %v, both %v", from, to, s.End(), s.Flushed(), spanLast, good, good)
		}
		if err := s.Write(good, wal[good-spanStart:][:100]); !errors.Is(err, ErrCutPending) {
			t.Errorf("Write after a failed cut = %v, want ErrCutPending", err)
		}
		if err := s.Sync(); !errors.Is(err, ErrCutPending) {
			t.Errorf("Sync after a failed cut = %v, want ErrCutPending", err)
		}
		fs.SetRule(nil)
		if err := s.Truncate(s.End()); err != nil {
			t.Fatalf("Truncate at the end after a failed cut: %v", err)
		}
		writeChunks(t, s, good, wal[good-spanStart:spanEnd-spanStart], rand.New(rand.NewPCG(13, 14)))
		if err := s.Sync(); err != nil {
			t.Fatalf("Sync after Recover: %v", err)
		}
		if s.Flushed() != spanEnd {
			t.Errorf("Flushed %v after Recover, rewrite and Sync; want %v", s.Flushed(), spanEnd)
		}
		mem.Crash()
		s.Close()
		mem.Restart()
		s = open(t, mem)
		if s.End() != spanEnd {
			t.Errorf("reopened after a crash at %v, want %v", s.End(), spanEnd)
		}
		same(t, s)
	})

	cut := spanSwitch
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		s := fill(t, fs)
		end := s.End()
		s.Close() // waits for the spare's fill, whose operations are not the Truncate's
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

// TestWALStoreKilledThenCrashed: a page server killed after writing WAL
// into a new segment, before its Sync, leaves the segment's file renamed
// into place in the page cache only. The store opened again fsyncs what
// the killed process wrote and reports it Flushed: a machine crash after
// that must keep all of it, the file's name included.
func TestWALStoreKilledThenCrashed(t *testing.T) {
	wal := spanWAL(t)
	mem := vfs.NewMem()
	// Each process is killed before the background fill of walseg's
	// next spare segment got anywhere (its temporary file is refused):
	// the fill's fsync of the directory would commit the renames too.
	fs := vfs.NewFaulty(mem)
	s, err := OpenWALStore(fs, "/wal", spanSegSize, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	half := pgdata.LSN(0x850000) // in segment 8
	if err := s.Write(spanStart, wal[:half-spanStart]); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close() // waits for the spare of segment 9
	fs.SetRule(func(op vfs.Op, name string) error {
		if op == vfs.OpCreate && strings.HasSuffix(name, ".cut") {
			return fmt.Errorf("killed: %w", vfs.ErrInjected)
		}
		return nil
	})
	if s, err = OpenWALStore(fs, "/wal", spanSegSize, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(half, wal[half-spanStart:spanEnd-spanStart]); err != nil { // into segment 9
		t.Fatal(err)
	}
	s.Close() // killed: the kernel keeps the writes and the renames

	s, err = OpenWALStore(fs, "/wal", spanSegSize, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	acked := s.Flushed()
	if acked != spanEnd {
		t.Fatalf("reopened after the kill with Flushed %v, want %v", acked, spanEnd)
	}
	s.Close()
	mem.Crash()
	mem.Restart()

	s, err = OpenWALStore(mem, "/wal", spanSegSize, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.End() < acked {
		t.Fatalf("after a machine crash the store ends at %v, below the Flushed %v reported before it", s.End(), acked)
	}
	if got := storedBytes(t, s); !bytes.Equal(got, wal[:len(got)]) {
		t.Fatal("the stored WAL differs from the sample")
	}
}
