package lazyfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// DefaultMemoryLimit is the serving process's default memory limit
// (SetMemoryLimit), in bytes.
const DefaultMemoryLimit = 64 << 20

// SetMemoryLimit sets the Go runtime's memory limit of the serving
// process to limit bytes, unless GOMEMLIMIT set one, and returns the
// limit in force; limit <= 0 leaves the runtime's.
//
// Without a limit the process's memory followed the history of its
// requests, not its configuration: go-fuse answers each READ in a buffer
// of the request's size, from a pool per size (a page count, up to 257
// of them), and the kernel's read-ahead sends reads of many sizes (a
// window ramping up, split where pages are already cached). Pooled
// buffers live until the second collection after they were put back,
// so each collection found the buffers of every size used since the
// one before live, and the collector's goal (twice that, GOGC 100) grew
// with them: 150-250 MiB resident after a 1 GiB scan (docs/
// performance.md, "The FUSE server's memory"). The buffers in use at
// once are bounded (maxBackground requests in flight, of up to 1 MiB):
// the limit makes the collector run, and the scavenger return memory,
// before the idle ones pile up.
func SetMemoryLimit(limit int64) int64 {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok || limit <= 0 {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// LogMemory logs the serving process's memory, split as the kernel
// counts it (/proc/self/status: anonymous, file-backed, shared)
// and as the Go runtime does (heap in use, idle, returned to the OS,
// stacks), and writes a heap profile (go tool pprof) into dir. It is
// what `zenith pg fuse` does on SIGUSR1: the process lives as long as
// its compute, and what its memory holds is otherwise not visible.
func LogMemory(dir string, log zerolog.Logger) error {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ev := log.Info()
	for k, v := range procStatus() {
		ev = ev.Int64(k, v)
	}
	path := filepath.Join(dir, fmt.Sprintf("fuse-heap-%s.pprof", time.Now().UTC().Format("20060102T150405.000")))
	err := writeHeapProfile(path)
	if err == nil {
		ev = ev.Str("heap_profile", path)
	}
	ev.Uint64("heap_alloc", ms.HeapAlloc).Uint64("heap_inuse", ms.HeapInuse).
		Uint64("heap_idle", ms.HeapIdle).Uint64("heap_released", ms.HeapReleased).
		Uint64("stack_inuse", ms.StackInuse).Uint64("go_sys", ms.Sys).Uint64("next_gc", ms.NextGC).Int64("memory_limit", debug.SetMemoryLimit(-1)).
		Uint32("num_gc", ms.NumGC).Int("goroutines", runtime.NumGoroutine()).Msg("memory")
	return err
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return nil
}

// procStatus returns the process's resident memory by kind, in bytes,
// and its threads, from /proc/self/status (empty if it cannot be read).
func procStatus() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return out
	}
	defer f.Close()
	keys := map[string]string{"VmRSS:": "rss", "RssAnon:": "rss_anon", "RssFile:": "rss_file",
		"RssShmem:": "rss_shmem", "Threads:": "os_threads"}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		k, ok := keys[fields[0]]
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) == 3 && fields[2] == "kB" {
			v <<= 10
		}
		out[k] = v
	}
	return out
}
