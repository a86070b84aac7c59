package walseg

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// checkWhole fails the test unless, in the store s on fs (restarted after
// a crash), every segment file is one of allowed and a whole segment, no
// other file is listed, and the spare, if there is one, is a whole
// segment of zeros. It returns the segments.
func checkWhole(t *testing.T, fs vfs.FS, s *Segments, allowed []uint64, what string) []uint64 {
	t.Helper()
	segs, others, err := s.List()
	if err != nil || len(others) > 0 {
		t.Fatalf("%s: List: %v, others %v", what, err, others)
	}
	for _, seg := range segs {
		if !slices.Contains(allowed, seg) {
			t.Errorf("%s: segment %d, want only %v", what, seg, allowed)
		}
		if size, err := s.Size(seg); err != nil || size != segSize {
			t.Errorf("%s: segment %d is %d bytes (%v), want a whole segment", what, seg, size, err)
		}
	}
	if spare, err := vfs.ReadFile(fs, "/wal/"+spareName); err == nil && (len(spare) != segSize || !isZero(spare)) {
		t.Errorf("%s: the spare is %d bytes, zeros %v; want a whole segment of zeros (WAL written into it under its spare name?)", what, len(spare), isZero(spare))
	}
	return segs
}

// TestNewSegmentCrashAtEachStep kills the machine at every file-system
// operation of a write that takes the spare for a new segment and of the
// Sync after it. After the restart the spare, if there is one, is still
// a whole segment of zeros: WAL written into the renamed spare must never
// be found under the spare's name, where the next segment would take it
// for zeros (a crash between the fdatasync of the new segment and the
// fsync of the directory that commits its rename would leave it there).
// What was synced before survives, and, once Sync returned, what it
// synced too.
func TestNewSegmentCrashAtEachStep(t *testing.T) {
	synced := pgdata.LSN(segSize - 3000)
	end := pgdata.LSN(segSize + 5000)
	data := walBytes(41, int(end))
	for step := 1; ; step++ {
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem)
		s, err := OpenPreallocated(fs, "/wal", segSize)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteAt(data[:synced], 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		s.waitFill() // the spare is ready, segment 0 open

		// The background fill of the next spare, which the write starts,
		// waits until the write and its Sync are done: the steps of
		// each are then the same in every run.
		gate := make(chan struct{})
		crash, ops, crashed := vfs.CrashAt(mem, step), 0, false
		fs.SetRule(func(op vfs.Op, name string) error {
			if strings.HasSuffix(name, spareName+tmpSuffix) {
				<-gate
			}
			ops++
			err := crash(op, name)
			crashed = crashed || err != nil
			return err
		})
		err = s.WriteAt(data[synced:], synced)
		if err == nil {
			err = s.Sync()
		}
		acked := err == nil && !crashed
		close(gate)
		s.Close() // waits for the fill
		fs.SetRule(nil)
		done := ops < step
		mem.Crash()
		mem.Restart()

		s = mustOpenPreallocated(t, mem)
		what := fmt.Sprintf("crash at step %d", step)
		segs := checkWhole(t, mem, s, []uint64{0, 1}, what)
		want := synced
		if acked {
			want = end
			if !slices.Equal(segs, []uint64{0, 1}) {
				t.Fatalf("%s, after Sync returned: segments %v, want [0 1]", what, segs)
			}
		}
		if got := read(t, s, 0, int(want)); !bytes.Equal(got, data[:want]) {
			t.Errorf("%s: the WAL synced up to %v changed", what, want)
		}
		if done {
			t.Logf("a crash at each of %d file-system operations left whole segments and a spare of zeros", step-1)
			return
		}
	}
}

// TestKilledThenCrashed: a process killed after renaming the spare into
// place for a new segment, before any Sync, leaves the rename in the page
// cache only. The store opened again must not report WAL in that file
// durable before the rename is: its users fsync what the killed process
// wrote (SyncSegment) and count it, or write on into the file and Sync,
// and a machine crash must then keep all of it.
func TestKilledThenCrashed(t *testing.T) {
	synced := pgdata.LSN(segSize - 3000)
	killed := pgdata.LSN(segSize + 5000)
	end := pgdata.LSN(segSize + 9000)
	data := walBytes(42, int(end))
	for _, tc := range []struct {
		name string
		on   func(t *testing.T, s *Segments) pgdata.LSN // after the reopen; returns what is durable
	}{
		{"the killed process's bytes synced on open", func(t *testing.T, s *Segments) pgdata.LSN {
			// As the safekeeper and the page server open their WAL:
			// cut at the end found, then fsync the last files.
			if err := s.Truncate(killed); err != nil {
				t.Fatal(err)
			}
			for _, seg := range []uint64{0, 1} {
				if err := s.SyncSegment(seg); err != nil {
					t.Fatal(err)
				}
			}
			return killed
		}},
		{"WAL written on and synced", func(t *testing.T, s *Segments) pgdata.LSN {
			if err := s.WriteAt(data[killed:], killed); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			return end
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			fs := vfs.NewFaulty(mem)
			s := mustOpenPreallocated(t, fs)
			if err := s.WriteAt(data[:synced], 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			s.waitFill()
			// The process is killed before the fill of the next spare
			// got anywhere: its fsync of the directory would commit
			// the rename below too.
			fs.SetRule(func(op vfs.Op, name string) error {
				if strings.HasSuffix(name, spareName+tmpSuffix) {
					return fmt.Errorf("killed: %w", vfs.ErrInjected)
				}
				return nil
			})
			if err := s.WriteAt(data[synced:killed], synced); err != nil { // takes the spare
				t.Fatal(err)
			}
			s.Close() // killed: no Sync, the kernel keeps what was done

			// Opened again, still without a fill: the crash comes
			// before a fill's fsync of the directory would.
			s = mustOpenPreallocated(t, fs)
			durable := tc.on(t, s)
			s.Close()
			mem.Crash()
			mem.Restart()

			s = mustOpenPreallocated(t, mem)
			segs := checkWhole(t, mem, s, []uint64{0, 1}, "after the crash")
			if !slices.Equal(segs, []uint64{0, 1}) {
				t.Fatalf("after the crash: segments %v, want [0 1]: the WAL reported durable in segment 1 is lost", segs)
			}
			if got := read(t, s, 0, int(durable)); !bytes.Equal(got, data[:durable]) {
				t.Errorf("after the crash: the WAL reported durable up to %v changed", durable)
			}
		})
	}
}
