package pageserver

import (
	"os"
	"path/filepath"
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
