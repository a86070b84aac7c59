package walseg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// segSize is the smallest WAL segment size PostgreSQL allows: small
// segments make writes cross files.
const segSize = 1 << 20

// walBytes is n bytes of recognisable WAL-like data.
func walBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

func mustOpen(t *testing.T, fs vfs.FS) *Segments {
	t.Helper()
	s, err := Open(fs, "/wal", segSize)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// read reads n bytes at lsn, failing the test on an error.
func read(t *testing.T, s *Segments, lsn pgdata.LSN, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if err := s.ReadAt(b, lsn); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteReadAcrossSegments: writes that cross segment boundaries land
// in the right files at the right offsets; List and Size say so; other
// files are reported, not taken for segments.
func TestWriteReadAcrossSegments(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	start := pgdata.LSN(3*segSize - 1000) // mid-segment, as a branch point is
	data := walBytes(1, 2*segSize+5000)
	for off := 0; off < len(data); off += 70000 {
		if err := s.WriteAt(data[off:min(off+70000, len(data))], start+pgdata.LSN(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, start, len(data)); !bytes.Equal(got, data) {
		t.Fatal("read back differs from what was written")
	}
	if f, err := fs.Create("/wal/walstore.json"); err == nil {
		f.Close()
	}
	segs, others, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{2, 3, 4, 5}; !slices.Equal(segs, want) {
		t.Errorf("segments %v, want %v", segs, want)
	}
	if !slices.Equal(others, []string{"walstore.json"}) {
		t.Errorf("other files %v, want walstore.json", others)
	}
	end := start + pgdata.LSN(len(data))
	if size, err := s.Size(5); err != nil || uint64(size) != end.SegmentOffset(segSize) {
		t.Errorf("last segment: %d bytes (%v), want %d", size, err, end.SegmentOffset(segSize))
	}
	if _, err := s.Size(2); err != nil {
		t.Error(err)
	}
	if err := s.ReadAt(make([]byte, 10), end-5); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read past the end: %v, want io.ErrUnexpectedEOF", err)
	}
	if n, err := s.RemoveBelow(4); err != nil || n != 2 {
		t.Errorf("RemoveBelow(4) = %d, %v; want 2 files removed", n, err)
	}
	if got := read(t, s, s.Start(4), 100); !bytes.Equal(got, data[s.Start(4)-start:][:100]) {
		t.Error("segment 4 changed after removing those below it")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSyncSurvivesCrash: what Sync returned for survives a machine crash,
// new files included (their directory entry was synced); what was
// written after it may not.
func TestSyncSurvivesCrash(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	data := walBytes(2, segSize+4096)
	if err := s.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(walBytes(3, segSize), pgdata.LSN(len(data))); err != nil {
		t.Fatal(err)
	}
	fs.Crash()
	s.Close()
	fs.Restart()

	s = mustOpen(t, fs)
	segs, _, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 2 {
		t.Fatalf("after the crash: segments %v, want 0 and 1 at least", segs)
	}
	if got := read(t, s, 0, len(data)); !bytes.Equal(got, data) {
		t.Error("synced WAL changed by the crash")
	}
}

// TestFailedFsyncBreaksTheStore: after an fsync fails, nothing is ever
// reported durable again by the same store, even when the next fsync
// would succeed (the kernel may have dropped the failed pages).
func TestFailedFsyncBreaksTheStore(t *testing.T) {
	fs := vfs.NewFaulty(vfs.NewMem())
	s, err := Open(fs, "/wal", segSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(walBytes(4, 8192), 0); err != nil {
		t.Fatal(err)
	}
	fs.SetRule(vfs.FailOnce(vfs.OpSync, func(name string) bool { return strings.HasSuffix(name, s.Name(0)) }))
	if err := s.Sync(); !errors.Is(err, ErrBroken) || !errors.Is(err, vfs.ErrInjected) && !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Sync with a failing fsync = %v, want ErrBroken", err)
	}
	fs.SetRule(nil)
	if err := s.Sync(); !errors.Is(err, ErrBroken) {
		t.Errorf("Sync after a failed fsync = %v, want ErrBroken", err)
	}
	if err := s.WriteAt([]byte("more"), 8192); !errors.Is(err, ErrBroken) {
		t.Errorf("WriteAt after a failed fsync = %v, want ErrBroken", err)
	}
	if err := s.Truncate(100); !errors.Is(err, ErrBroken) {
		t.Errorf("Truncate after a failed fsync = %v, want ErrBroken", err)
	}
}

// TestResetAfterFailedFsync: a store broken by a failed fsync works
// again after Reset and a cut back to its last good Sync: the bytes
// written after that Sync (here across a new segment file too) are gone,
// what is written after the cut is durable, and a crash then keeps
// exactly the synced prefix and the new bytes.
func TestResetAfterFailedFsync(t *testing.T) {
	mem := vfs.NewMem()
	fs := vfs.NewFaulty(mem)
	s := mustOpen(t, fs)
	synced := pgdata.LSN(segSize - 5000)
	old, lost, again := walBytes(11, int(synced)), walBytes(12, 9000), walBytes(13, 7000)
	if err := s.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(lost, synced); err != nil { // into segment 1 too
		t.Fatal(err)
	}
	fs.SetRule(vfs.FailOnce(vfs.OpSync, func(string) bool { return true }))
	if err := s.Sync(); !errors.Is(err, ErrBroken) {
		t.Fatalf("Sync with a failing fsync = %v, want ErrBroken", err)
	}
	fs.SetRule(nil)
	s.Reset()
	if err := s.Truncate(synced); err != nil {
		t.Fatalf("Truncate after Reset: %v", err)
	}
	if segs, _, _ := s.List(); !slices.Equal(segs, []uint64{0}) {
		t.Errorf("after the cut: segments %v, want [0]", segs)
	}
	if err := s.WriteAt(again, synced); err != nil {
		t.Fatalf("WriteAt after Reset and Truncate: %v", err)
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync after Reset and Truncate: %v", err)
	}
	mem.Crash()
	s.Close()
	mem.Restart()
	s = mustOpen(t, mem)
	want := append(slices.Clone(old), again...)
	size0, err := s.Size(0)
	if err != nil {
		t.Fatal(err)
	}
	size1, err := s.Size(1)
	if err != nil {
		t.Fatal(err)
	}
	if got := size0 + size1; got != int64(len(want)) {
		t.Fatalf("after a crash the segments hold %d bytes, want %d", got, len(want))
	}
	if got := read(t, s, 0, len(want)); !bytes.Equal(got, want) {
		t.Error("after a crash the stored bytes are not the synced ones and those written after the cut")
	}
}

// TestTruncateCrashAtEachStep kills the machine at every file-system
// operation of a Truncate in turn. After the restart each segment file is
// whole: the one holding the cut is either as it was or cut exactly at
// the cut, later ones are whole or gone (a later one never outlives an
// earlier one's removal), and no temporary copy is left once listed.
func TestTruncateCrashAtEachStep(t *testing.T) {
	data := walBytes(5, 3*segSize+777)
	cut := pgdata.LSN(segSize + 12345)
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		s, err := Open(fs, "/wal", segSize)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		fs.SetRule(vfs.CrashAt(mem, step))
		err = s.Truncate(cut)
		fs.SetRule(nil)
		done := err == nil
		if done {
			mem.Crash() // the truncation completed: it must all survive
		}
		s.Close()
		mem.Restart()

		s = mustOpen(t, mem)
		segs, others, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(others) > 0 {
			t.Errorf("step %d: other files left: %v", step, others)
		}
		if names, _ := mem.List("/wal"); slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, tmpSuffix) }) {
			t.Errorf("step %d: List left a temporary copy: %v", step, names)
		}
		cutSeg := cut.SegmentNo(segSize)
		for i, seg := range segs {
			if seg != uint64(i) {
				t.Fatalf("step %d: segments %v have a hole", step, segs)
			}
			size, err := s.Size(seg)
			if err != nil {
				t.Fatal(err)
			}
			full := min(int64(segSize), int64(len(data))-int64(s.Start(seg)))
			switch {
			case seg < cutSeg && size != full:
				t.Errorf("step %d: segment %d below the cut is %d bytes, want %d", step, seg, size, full)
			case seg == cutSeg && size != full && uint64(size) != cut.SegmentOffset(segSize):
				t.Errorf("step %d: the cut segment is %d bytes: neither whole (%d) nor cut (%d)", step, size, full, cut.SegmentOffset(segSize))
			case seg > cutSeg && size != full:
				t.Errorf("step %d: segment %d after the cut is %d bytes, want whole (%d) or gone", step, seg, size, full)
			}
			if got := read(t, s, s.Start(seg), int(size)); !bytes.Equal(got, data[s.Start(seg):][:size]) {
				t.Errorf("step %d: segment %d's bytes changed", step, seg)
			}
		}
		if done {
			if want := []uint64{0, 1}; !slices.Equal(segs, want) {
				t.Errorf("completed truncation: segments %v, want %v", segs, want)
			}
			if size, _ := s.Size(1); uint64(size) != cut.SegmentOffset(segSize) {
				t.Errorf("completed truncation: the cut segment is %d bytes, want %d", size, cut.SegmentOffset(segSize))
			}
			t.Logf("a crash at each of the truncation's %d file-system operations left whole segments", step-1)
			return
		}
	}
}

// TestOpenRefusesBadSegmentSize: a segment size PostgreSQL cannot have is
// refused before anything is created.
func TestOpenRefusesBadSegmentSize(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	if _, err := Open(vfs.Default, dir, 1000); err == nil {
		t.Fatal("segment size 1000 accepted")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory was created for a refused store: %v", err)
	}
}
