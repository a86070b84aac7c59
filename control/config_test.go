package control

import (
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/id"
)

func TestConfigRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PGBinDir = "/usr/lib/postgresql/15/bin"
	cfg.DefaultTenant = id.NewTenantID()
	cfg.Safekeepers.Count = 3
	b, err := encodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "# Tenant that commands use") {
		t.Errorf("config has no comments:\n%s", b)
	}
	got, err := decodeConfig("config.toml", b)
	if err != nil {
		t.Fatalf("decode what encode wrote: %v\n%s", err, b)
	}
	if got != cfg {
		t.Errorf("round trip: got %+v, want %+v", got, cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	const tenant = `default_tenant = "0123456789abcdef0123456789abcdef"` + "\n"
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"unknown top-level", tenant + "pg_bin = '/x'\n", "unknown setting"},
		{"unknown in table", tenant + "[pageserver]\nlisten = '1:2'\n", "unknown setting"},
		{"no tenant", "", "default_tenant is not set"},
		{"bad tenant", `default_tenant = "xyz"`, "invalid tenant id"},
		{"bad address", tenant + "[pageserver]\nlisten_pg = 'localhost'\n", "pageserver.listen_pg"},
		{"bad port", tenant + "[pageserver]\nlisten_http = 'localhost:0'\n", "pageserver.listen_http"},
		{"too many safekeepers", tenant + "[safekeepers]\ncount = 10\n", "safekeepers.count = 10"},
		{"negative safekeepers", tenant + "[safekeepers]\ncount = -1\n", "safekeepers.count = -1"},
		{"safekeeper ports overflow", tenant + "[safekeepers]\ncount = 3\nbase_pg_port = 65534\n", "safekeepers.base_pg_port"},
		{"wrong type", tenant + "[safekeepers]\ncount = 'three'\n", "config.toml:"},
		{"not toml", "[[[", "config.toml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeConfig("config.toml", []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("decodeConfig(%q) = %v, want error containing %q", tc.text, err, tc.wantErr)
			}
		})
	}
}
