// Package memstat measures a process's own memory as the page server and
// the safekeeper report it: resident memory from the operating system and
// the Go runtime's heap from runtime/metrics, which, unlike
// runtime.ReadMemStats, does not stop the world. It only reads; it never
// tunes the runtime.
package memstat

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"runtime/metrics"
	"strconv"
)

// Process is the memory of the calling process, in bytes.
type Process struct {
	// RSS is VmRSS from /proc/self/status: what the operating system
	// charges the process (0 where that file does not exist).
	RSS int64
	// GoHeap is the memory of Go heap objects, live or not yet swept.
	GoHeap int64
	// GoHeapLive is the heap the last garbage collection found live: what
	// the process holds on to, without the garbage that GoHeap counts
	// until the next collection. A heap that grows shows here first; RSS
	// may not show it while the garbage shrinks to make room under
	// GoLimit.
	GoHeapLive int64
	// GoHeapGoal is the heap size at which the next collection starts:
	// twice the live heap with GOGC=100, or less to keep the runtime
	// under GoLimit. A runtime that holds about its goal has grown to
	// what its collector lets it hold for this live heap.
	GoHeapGoal int64
	// GoGCCycles counts the garbage collections since the process
	// started: GoHeapLive and GoHeapGoal change only at one.
	GoGCCycles int64
	// GoRuntime is all the memory the Go runtime holds from the operating
	// system (mapped and not released): the heap with its free spans,
	// stacks and the runtime's own structures. RSS minus GoRuntime is
	// roughly what C code (cgo) allocated.
	GoRuntime int64
	// GoLimit is GOMEMLIMIT, 0 when none is set.
	GoLimit int64
}

// Read measures the calling process now.
func Read() Process {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/gc/gomemlimit:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(samples)
	v := func(i int) int64 {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(min(samples[i].Value.Uint64(), math.MaxInt64))
	}
	p := Process{RSS: rss(), GoHeap: v(0), GoHeapLive: v(4), GoHeapGoal: v(5), GoGCCycles: v(6), GoRuntime: v(1) - v(2), GoLimit: v(3)}
	if p.GoLimit == math.MaxInt64 {
		p.GoLimit = 0
	}
	return p
}

// rss reads VmRSS from /proc/self/status.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return parseVmRSS(b)
}

// parseVmRSS finds the "VmRSS:   123 kB" line of a /proc/<pid>/status
// file, 0 if there is none.
func parseVmRSS(status []byte) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 {
			return 0
		}
		return kb << 10
	}
	return 0
}
