package memstat

import (
	"runtime"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         int64
	}{
		{"linux", "Name:\tzenith\nVmPeak:\t  900 kB\nVmRSS:\t  368100 kB\nRssAnon:\t 1 kB\n", 368100 << 10},
		{"missing", "Name:\tzenith\n", 0},
		{"other unit", "VmRSS:\t 5 MB\n", 0},
		{"garbage", "VmRSS:\t x kB\n", 0},
	} {
		if got := parseVmRSS([]byte(tc.status)); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestReadSeesTheHeapGrow allocates 64 MiB and keeps it alive: the heap
// must have grown by most of it, and the runtime must hold at least the
// heap.
func TestReadSeesTheHeapGrow(t *testing.T) {
	before := Read()
	keep := make([][]byte, 64)
	for i := range keep {
		keep[i] = make([]byte, 1<<20)
		for j := 0; j < len(keep[i]); j += 4096 {
			keep[i][j] = 1 // every page resident
		}
	}
	after := Read()
	runtime.KeepAlive(keep)
	if grew := after.GoHeap - before.GoHeap; grew < 48<<20 {
		t.Errorf("heap grew by %d bytes after allocating 64 MiB, want at least 48 MiB (before %+v, after %+v)", grew, before, after)
	}
	if after.GoRuntime < after.GoHeap {
		t.Errorf("the runtime holds %d bytes, less than its heap of %d", after.GoRuntime, after.GoHeap)
	}
	if runtime.GOOS == "linux" && after.RSS < 48<<20 {
		t.Errorf("RSS %d bytes with 64 MiB allocated and touched, want at least 48 MiB", after.RSS)
	}
}

// TestReadSeesTheLiveHeap keeps 64 MiB alive across a collection, then
// drops it: the live heap must count it after the first collection and
// not after the second, which the heap's garbage would not tell; the
// heap goal is at least the live heap, and the collections are counted.
func TestReadSeesTheLiveHeap(t *testing.T) {
	runtime.GC()
	before := Read()
	keep := make([][]byte, 64)
	for i := range keep {
		keep[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	held := Read()
	runtime.KeepAlive(keep)
	if grew := held.GoHeapLive - before.GoHeapLive; grew < 60<<20 {
		t.Errorf("live heap grew by %d bytes with 64 MiB kept across a collection, want at least 60 MiB (before %+v, held %+v)", grew, before, held)
	}
	if held.GoGCCycles <= before.GoGCCycles {
		t.Errorf("%d collections counted after runtime.GC, %d before", held.GoGCCycles, before.GoGCCycles)
	}
	if held.GoHeapGoal < held.GoHeapLive {
		t.Errorf("heap goal %d bytes is below the live heap, %d", held.GoHeapGoal, held.GoHeapLive)
	}
	keep = nil
	runtime.GC()
	dropped := Read()
	if left := dropped.GoHeapLive - before.GoHeapLive; left > 16<<20 {
		t.Errorf("live heap still %d bytes above the start after the 64 MiB were dropped and collected (before %+v, dropped %+v)", left, before, dropped)
	}
}
