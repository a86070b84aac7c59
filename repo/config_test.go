package repo

import (
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/tomlconf"
)

func TestTenantConfigRoundTrip(t *testing.T) {
	c := DefaultTenantConfig()
	c.GCHorizon = 12345
	c.PITRInterval = tomlconf.Duration(90 * time.Minute)
	b, err := encodeTenantConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gc_horizon = 12345", "pitr_interval = '1h30m0s'", "# Bytes of WAL history"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("encoded config lacks %q:\n%s", want, b)
		}
	}
	got, err := decodeTenantConfig(b)
	if err != nil || got != c {
		t.Errorf("decode(encode(c)) = %+v, %v; want %+v", got, err, c)
	}
}

func TestTenantConfigDecodeErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"gc_horizon = 1\nbogus = 2\n", "bogus"},
		{"checkpoint_distance = 0\n", "checkpoint_distance"},
		{"pitr_interval = 'soon'\n", "soon"},
		{"compaction_threshold = 0\n", "compaction_threshold"},
		{"image_creation_threshold = 0\n", "image_creation_threshold"},
		{"gc_horizon = -1\n", "gc_horizon"},
		{"checkpoint_timeout = '0s'\n", "checkpoint_timeout"},
		{"compaction_target_size = 0\n", "compaction_target_size"},
		{"compaction_idle_period = '-1s'\n", "compaction_idle_period"},
		{"gc_horizon = 'x'\n", "gc_horizon"},
	}
	for _, tt := range tests {
		_, err := decodeTenantConfig([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("decode(%q) error = %v, want one naming %q", tt.in, err, tt.want)
		}
	}
	// Settings left out keep their defaults.
	got, err := decodeTenantConfig([]byte("gc_horizon = 7\n"))
	if want := DefaultTenantConfig(); err != nil || got.GCHorizon != 7 || got.CheckpointDistance != want.CheckpointDistance {
		t.Errorf("partial config = %+v, %v", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := DefaultConfig("/w")
	base.Redo = nopRedo{}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no workdir", func(c *Config) { c.Workdir = "" }, "Workdir"},
		{"no redo", func(c *Config) { c.Redo = nil }, "Redo"},
		{"negative cache", func(c *Config) { c.PageCacheSize = -1 }, "PageCacheSize"},
		{"negative interval", func(c *Config) { c.GCInterval = -time.Second }, "interval"},
		{"negative open files", func(c *Config) { c.MaxOpenLayerFiles = -1 }, "MaxOpenLayerFiles"},
	}
	for _, tt := range tests {
		c := base
		tt.edit(&c)
		err := c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	b, err := encodeMetadata(metadata{DiskConsistentLSN: 0x100, Layers: []string{"a"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"crc32c":0,"body":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMetadata(b, "metadata")
		if err != nil {
			return
		}
		again, err := encodeMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeMetadata(again, "metadata"); err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
	})
}
