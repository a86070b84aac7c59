package control_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/lazyfs"
	"github.com/zenithdb/zenith/control/zenithtest"
)

// fuseMemoryBound is the peak resident memory TestLazyFUSEMemory allows
// the FUSE server: its Go memory limit and 36 MiB more (the binary's
// pages, about 24 MiB, and what the runtime keeps beyond the limit for a
// moment).
const fuseMemoryBound = lazyfs.DefaultMemoryLimit + 36<<20

// TestLazyFUSEMemory scans a 470 MiB pgbench table through a lazy node
// (no prewarm: every block fetched by the scan's reads) and checks the
// FUSE server's peak resident memory (VmHWM) against fuseMemoryBound.
// Here, right after the load, the server without a memory limit peaked
// at 41-65 MiB too (2026-12-04); with the page server at rest, the
// same scan took it to 113-123 MiB, and to 146-175 MiB at 1 GiB
// (docs/performance.md, "The FUSE server's memory"). Then SIGUSR1 makes
// the server log its memory, with the memory limit in force (the
// default) and a heap profile.
func TestLazyFUSEMemory(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)
	loader := env.Postgres.CreateStart("main", "--eager")
	pgbench(t, loader.ConnString, "-i", "-s", "30", "-q")
	loader.Stop()

	pg := createLazyCold(t, env, "cold")
	var n int64
	if err := pg.Connect().QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&n); err != nil || n != 3000000 {
		t.Fatalf("count(*) of pgbench_accounts: %d, %v; want 3000000", n, err)
	}
	dir := nodeDir(t, filepath.Join(env.RepoDir, "pgdatadirs", "tenants"), "cold")
	b, err := os.ReadFile(filepath.Join(dir, "fuse.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid < 1 {
		t.Fatalf("fuse.pid: %q", b)
	}
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	hwm := statusBytes(t, status, "VmHWM:")
	t.Logf("FUSE server after the scan: peak resident %.1f MiB, now %.1f MiB",
		float64(hwm)/(1<<20), float64(statusBytes(t, status, "VmRSS:"))/(1<<20))
	if hwm > fuseMemoryBound {
		t.Errorf("FUSE server's peak resident memory after a 470 MiB scan: %d MiB; want at most %d MiB",
			hwm>>20, fuseMemoryBound>>20)
	}

	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var line struct {
		RSS         int64  `json:"rss"`
		HeapInuse   int64  `json:"heap_inuse"`
		MemoryLimit int64  `json:"memory_limit"`
		HeapProfile string `json:"heap_profile"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for line.HeapProfile == "" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		log, err := os.ReadFile(filepath.Join(dir, "fuse.log"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(log))
		for sc.Scan() {
			var l struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "memory" {
				if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if line.HeapProfile == "" || line.RSS <= 0 || line.HeapInuse <= 0 {
		t.Fatalf("after SIGUSR1, the FUSE server's memory line: %+v; want its resident memory, heap and a heap profile", line)
	}
	if line.MemoryLimit != lazyfs.DefaultMemoryLimit {
		t.Errorf("FUSE server's memory limit: %d; want the default, %d", line.MemoryLimit, lazyfs.DefaultMemoryLimit)
	}
	prof, err := os.ReadFile(line.HeapProfile)
	if err != nil {
		t.Fatal(err)
	}
	// A profile as go tool pprof reads it: gzipped protobuf.
	if !bytes.HasPrefix(prof, []byte{0x1f, 0x8b}) {
		t.Errorf("heap profile %s: %q...; want a gzipped profile", line.HeapProfile, prof[:min(len(prof), 16)])
	}
	pg.Stop()
}

// statusBytes is field name (kB) of /proc/PID/status, in bytes.
func statusBytes(t *testing.T, status []byte, name string) int64 {
	t.Helper()
	for _, l := range strings.Split(string(status), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == name && f[2] == "kB" {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("%s in /proc/PID/status: %q", name, l)
			}
			return v << 10
		}
	}
	t.Fatalf("no %s in /proc/PID/status", name)
	return 0
}
