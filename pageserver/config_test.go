package pageserver

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), ConfigFileName)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSampleConfigIsTheDefault keeps the shipped sample honest: it must
// load, and say exactly what DefaultConfig says.
func TestSampleConfigIsTheDefault(t *testing.T) {
	got, err := LoadConfig(writeConfig(t, SampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); got != want {
		t.Errorf("sample config loads as %+v, want the defaults %+v", got, want)
	}
}

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "listen_pg = \"127.0.0.1:7000\"\ngc_period = \"90s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ListenPG != "127.0.0.1:7000" || time.Duration(cfg.GCPeriod) != 90*time.Second || cfg.RedoProcesses != DefaultConfig().RedoProcesses {
		t.Errorf("got %+v", cfg)
	}
	for _, tc := range []struct{ text, want string }{
		{"listen_pgg = \"x:1\"\n", "unknown setting"},
		{"listen_pg = \"nohostport\"\n", "listen_pg"},
		{"gc_period = \"5 minutes\"\n", "duration"},
		{"gc_period = \"-5m\"\n", "gc_period must be positive"},
		{"redo_processes = 0\n", "redo_processes"},
		{"max_open_layer_files = 0\n", "max_open_layer_files"},
		{"in_memory_layer_limit = 1000\n", "in_memory_layer_limit"},
		{"log_format = \"xml\"\n", "log_format"},
		{"checkpoint_distance = \"big\"\n", ConfigFileName},
	} {
		_, err := LoadConfig(writeConfig(t, tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: got %v, want an error containing %q", tc.text, err, tc.want)
		}
	}
}

// memory_limit: 0 derives the limit from the caches, a number sets it,
// -1 leaves the runtime without one; too small a limit is refused.
func TestMemoryLimit(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set: it overrides memory_limit")
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tc := range []struct {
		limit, want int64
	}{
		{0, DefaultConfig().DerivedMemoryLimit()},
		{512 << 20, 512 << 20},
		{-1, 0},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		cfg := DefaultConfig()
		cfg.MemoryLimit = tc.limit
		if err := cfg.Validate(); err != nil {
			t.Fatalf("memory_limit = %d: %v", tc.limit, err)
		}
		if got := SetMemoryLimit(cfg); got != tc.want {
			t.Errorf("memory_limit = %d: SetMemoryLimit says %d, want %d", tc.limit, got, tc.want)
		}
		runtime := debug.SetMemoryLimit(-1)
		if runtime == math.MaxInt64 {
			runtime = 0
		}
		if runtime != tc.want {
			t.Errorf("memory_limit = %d: the runtime's limit is %d, want %d", tc.limit, runtime, tc.want)
		}
	}
	if got := DefaultConfig().DerivedMemoryLimit(); got != 352<<20 {
		t.Errorf("the default derived memory limit is %d; the sample config says 352 MiB", got)
	}
	cfg := DefaultConfig()
	cfg.MemoryLimit = 1000
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Errorf("memory_limit = 1000: %v, want an error naming memory_limit", err)
	}
}
