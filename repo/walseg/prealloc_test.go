package walseg

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

func mustOpenPreallocated(t *testing.T, fs vfs.FS) *Segments {
	t.Helper()
	s, err := OpenPreallocated(fs, "/wal", segSize)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// syncCounter is a file system that counts the fsyncs and fdatasyncs of
// each file by name, over a real one.
type syncCounter struct {
	vfs.FS
	mu               sync.Mutex
	fsyncs, datasync map[string]int
}

func newSyncCounter(fs vfs.FS) *syncCounter {
	return &syncCounter{FS: fs, fsyncs: map[string]int{}, datasync: map[string]int{}}
}

func (c *syncCounter) OpenReadWrite(name string) (vfs.File, error) {
	f, err := c.FS.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return &countedFile{File: f, c: c, name: filepath.Base(name)}, nil
}

type countedFile struct {
	vfs.File
	c    *syncCounter
	name string
}

func (f *countedFile) Sync() error {
	f.c.mu.Lock()
	f.c.fsyncs[f.name]++
	f.c.mu.Unlock()
	return f.File.Sync()
}

func (f *countedFile) SyncData() error {
	f.c.mu.Lock()
	f.c.datasync[f.name]++
	f.c.mu.Unlock()
	return f.File.SyncData()
}

// TestPreallocatedSegments: in a preallocated store every segment file is
// a whole segment from its first write, zeros after the written WAL, the
// writes into it are synced with fdatasync (never fsync), a spare is made
// for the next segment, and what Sync returned for survives a machine
// crash while what was written after it may not.
func TestPreallocatedSegments(t *testing.T) {
	mem := vfs.NewMem()
	fs := newSyncCounter(mem)
	s := mustOpenPreallocated(t, fs)
	start := pgdata.LSN(segSize - 3000)
	data := walBytes(21, 10000) // across segments 0 and 1
	for off := 0; off < len(data); off += 1000 {
		if err := s.WriteAt(data[off:off+1000], start+pgdata.LSN(off)); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	end := start + pgdata.LSN(len(data))
	if err := s.WriteAt(walBytes(22, 5000), end); err != nil { // not synced
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // waits for the spare's fill
		t.Fatal(err)
	}
	for _, seg := range []uint64{0, 1} {
		name := s.Name(seg)
		if fs.fsyncs[name] != 0 || fs.datasync[name] == 0 {
			t.Errorf("segment %s: %d fsyncs and %d fdatasyncs, want only fdatasyncs", name, fs.fsyncs[name], fs.datasync[name])
		}
	}
	mem.Crash()
	mem.Restart()

	s = mustOpenPreallocated(t, mem)
	segs, others, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{0, 1}; !slices.Equal(segs, want) || len(others) > 0 {
		t.Fatalf("segments %v and others %v, want %v and none", segs, others, want)
	}
	for _, seg := range segs {
		if size, err := s.Size(seg); err != nil || size != segSize {
			t.Errorf("segment %d: %d bytes (%v), want a whole segment, %d", seg, size, err, segSize)
		}
	}
	if got := read(t, s, start, len(data)); !bytes.Equal(got, data) {
		t.Error("synced WAL changed by the crash")
	}
	if got := read(t, s, 0, int(start)); !isZero(got) {
		t.Error("bytes before the first write are not zeros")
	}
	tail := read(t, s, end, int(2*segSize-end))
	if lost := walBytes(22, 5000); !isZero(tail[len(lost):]) || !isZero(tail[:len(lost)]) && !bytes.Equal(tail[:len(lost)], lost) {
		t.Error("after the synced WAL: neither zeros nor the unsynced write")
	}
	spare, err := vfs.ReadFile(mem, "/wal/"+spareName)
	if err != nil {
		t.Fatalf("no durable spare after the crash: %v", err)
	}
	if len(spare) != segSize || !isZero(spare) {
		t.Errorf("the spare is %d bytes, zeros %v; want %d zeros", len(spare), isZero(spare), segSize)
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestPreallocatedTruncateLeavesZeros: a cut in a preallocated store
// leaves the segment whole with zeros after the cut, so WAL written again
// from the cut, shorter than what was cut, never runs on into the old
// bytes after a crash: a decoder would take them for WAL.
func TestPreallocatedTruncateLeavesZeros(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpenPreallocated(t, mem)
	old := walBytes(31, 2*segSize+100)
	if err := s.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	cut := pgdata.LSN(segSize + 500)
	if err := s.Truncate(cut); err != nil {
		t.Fatal(err)
	}
	again := walBytes(32, 300)
	if err := s.WriteAt(again, cut); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	mem.Crash()
	s.Close()
	mem.Restart()

	s = mustOpenPreallocated(t, mem)
	if segs, _, _ := s.List(); !slices.Equal(segs, []uint64{0, 1}) {
		t.Errorf("after the cut: segments %v, want [0 1]", segs)
	}
	if size, err := s.Size(1); err != nil || size != segSize {
		t.Errorf("the cut segment is %d bytes (%v), want a whole segment", size, err)
	}
	want := append(slices.Clone(old[:cut]), again...)
	if got := read(t, s, 0, len(want)); !bytes.Equal(got, want) {
		t.Error("the WAL below the cut and the WAL written after it changed")
	}
	if rest := read(t, s, cut+pgdata.LSN(len(again)), int(2*segSize-cut)-len(again)); !isZero(rest) {
		t.Error("old bytes after the cut survived it")
	}
	// A cut where only zeros follow changes nothing.
	if err := s.Truncate(cut + pgdata.LSN(len(again))); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, 0, len(want)); !bytes.Equal(got, want) {
		t.Error("a cut over zeros changed the WAL below it")
	}
}

// TestSpareFillCrashAtEachStep kills the machine at every file-system
// operation of the spare's fill in turn: after the restart there is no
// spare or a whole segment of zeros, and no temporary file once listed.
func TestSpareFillCrashAtEachStep(t *testing.T) {
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		s, err := OpenPreallocated(fs, "/wal", segSize)
		if err != nil {
			t.Fatal(err)
		}
		fs.SetRule(vfs.CrashAt(mem, step))
		err = s.fillSpare()
		fs.SetRule(nil)
		done := err == nil
		if done {
			mem.Crash()
		}
		mem.Restart()
		s = mustOpenPreallocated(t, mem)
		if _, others, err := s.List(); err != nil || len(others) > 0 {
			t.Fatalf("step %d: List: others %v, %v", step, others, err)
		}
		names, _ := mem.List("/wal")
		if slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, tmpSuffix) }) {
			t.Errorf("step %d: a temporary file is left: %v", step, names)
		}
		spare, err := vfs.ReadFile(mem, "/wal/"+spareName)
		switch {
		case err == nil && (len(spare) != segSize || !isZero(spare)):
			t.Errorf("step %d: the spare is %d bytes, zeros %v", step, len(spare), isZero(spare))
		case err != nil && done:
			t.Fatalf("step %d: a completed fill left no spare: %v", step, err)
		}
		if done {
			t.Logf("a crash at each of the fill's %d file-system operations left no spare or a whole one", step-1)
			return
		}
	}
}
