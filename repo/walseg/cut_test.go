package walseg

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// inPlaceCuts are cuts in the last file of a preallocated store holding
// the span sample from spanStart up to upTo, and the end RecordEnd finds
// after the whole cut.
var inPlaceCuts = []struct {
	name      string
	upTo, cut pgdata.LSN
	want      pgdata.LSN
}{
	{"at the last record's start", spanEnd, spanLast, spanLast},
	{"inside the last record", spanEnd, spanLast + 3000, spanLast},
	{"inside the last record's header", spanEnd, spanLast + 8, spanLast},
	{"at a segment's start", spanEnd, 0x900000, 0x900000},
	{"at an XLOG_SWITCH, zeros after it", 0x900000, spanSwitch, spanSwitch},
}

// spanStoreUpTo is a preallocated store on fs holding the span sample
// from spanStart up to upTo, synced, with no fill under way.
func spanStoreUpTo(t *testing.T, fs vfs.FS, upTo pgdata.LSN) *Segments {
	t.Helper()
	s := mustOpenPreallocated(t, fs)
	wal := spanWAL(t)
	base := pgdata.LSN(7 * segSize)
	if err := s.WriteAt(wal[spanStart-base:upTo-base], spanStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.waitFill()
	return s
}

func recordEnd(t *testing.T, s *Segments) pgdata.LSN {
	t.Helper()
	end, err := s.RecordEnd(context.Background(), spanStart)
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// TestCutInPlaceCrashAtEachStep kills the machine at every file-system
// operation of a cut in a preallocated store's last file: the cut makes
// no file (it zeroes in place), and after the restart the file is whole
// and RecordEnd finds the old end or the cut's, the cut's once Truncate
// returned.
func TestCutInPlaceCrashAtEachStep(t *testing.T) {
	for _, tc := range inPlaceCuts {
		t.Run(tc.name, func(t *testing.T) {
			for step := 1; ; step++ {
				mem := vfs.NewMem()
				fs := vfs.NewFaulty(mem)
				spanStoreUpTo(t, fs, tc.upTo).Close()
				s := mustOpenPreallocated(t, fs)
				old := recordEnd(t, s)
				crash, ops := vfs.CrashAt(mem, step), 0
				fs.SetRule(func(op vfs.Op, name string) error {
					if op == vfs.OpCreate || op == vfs.OpRename {
						t.Errorf("step %d: the cut did %s %s: it needs no new file", step, op, name)
					}
					ops++
					return crash(op, name)
				})
				err := s.Truncate(tc.cut)
				fs.SetRule(nil)
				done := ops < step
				if done && err != nil {
					t.Fatal(err)
				}
				s.Close()
				mem.Crash()
				mem.Restart()

				s = mustOpenPreallocated(t, mem)
				last := (tc.upTo - 1).SegmentNo(segSize)
				checkWhole(t, mem, s, []uint64{7, 8, 9}, fmt.Sprintf("step %d", step))
				got := recordEnd(t, s)
				if got != tc.want && (done || got != old) {
					t.Fatalf("step %d: RecordEnd = %v, want %v (or, before the cut returned, the old %v)", step, got, tc.want, old)
				}
				if done {
					off := int64(tc.cut.SegmentOffset(segSize))
					if nonZero, err := s.firstNonZero(last, off, segSize); err != nil || nonZero != segSize {
						t.Errorf("after the cut: a byte that is not zero at %d after it (%v)", nonZero, err)
					}
					t.Logf("a crash at each of the cut's %d file-system operations found the old end or the cut's", step-1)
					return
				}
			}
		})
	}
}

// TestCutInPlaceTornRest: once the first step of a cut in place is
// durable (the sector holding the first byte after the cut that is not
// zero), a crash may leave any mix of old bytes and zeros in the sectors
// after it; RecordEnd must find the cut's end in every mix. Without the
// first step (the sector left old), some mixes run on past the cut (at
// least the one where nothing reached the disk: the old end).
func TestCutInPlaceTornRest(t *testing.T) {
	zeros := make([]byte, sectorSize)
	for _, tc := range inPlaceCuts {
		t.Run(tc.name, func(t *testing.T) {
			last := (tc.upTo - 1).SegmentNo(segSize)
			off := int64(tc.cut.SegmentOffset(segSize))
			ranPast := false
			for seed := range 20 {
				for _, firstStep := range []bool{true, false} {
					mem := vfs.NewMem()
					s := spanStoreUpTo(t, mem, tc.upTo)
					first, err := s.firstZeroStep(last, off, segSize)
					if err != nil || first <= off {
						t.Fatalf("the first step ends at %d (%v), want after the cut, %d", first, err, off)
					}
					if firstStep {
						if err := s.WriteAt(make([]byte, first-off), tc.cut); err != nil {
							t.Fatal(err)
						}
					}
					// seed 0: nothing after the first step reached the
					// disk; seed 1: all of it; then random mixes.
					r := rand.New(rand.NewPCG(uint64(seed), 7))
					for sec := first; sec < segSize; sec += sectorSize {
						if seed == 1 || seed > 1 && r.IntN(3) == 0 {
							if err := s.WriteAt(zeros, s.Start(last)+pgdata.LSN(sec)); err != nil {
								t.Fatal(err)
							}
						}
					}
					got := recordEnd(t, s)
					switch {
					case firstStep && got != tc.want:
						t.Fatalf("seed %d: after the first step and part of the rest, RecordEnd = %v, want %v", seed, got, tc.want)
					case !firstStep && got > tc.want:
						ranPast = true
					}
					s.Close()
				}
			}
			if !ranPast {
				t.Errorf("no mix without the first step ran past the cut: the mixes show nothing")
			}
		})
	}
}

// TestCutInPlaceOnFullDisk: a cut in a preallocated store's last file
// succeeds on a disk where no file can be made.
func TestCutInPlaceOnFullDisk(t *testing.T) {
	mem := vfs.NewMem()
	fs := vfs.NewFaulty(mem)
	s := spanStoreUpTo(t, fs, spanEnd)
	fs.SetRule(func(op vfs.Op, name string) error {
		if op == vfs.OpCreate {
			return &vfs.DiskFullError{Path: name, Err: syscall.ENOSPC}
		}
		return nil
	})
	if err := s.Truncate(spanLast + 3000); err != nil {
		t.Fatalf("Truncate on a full disk: %v", err)
	}
	if got := recordEnd(t, s); got != spanLast {
		t.Errorf("RecordEnd after the cut = %v, want %v", got, spanLast)
	}
	s.Close()
}
