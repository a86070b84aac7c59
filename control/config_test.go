package control

import (
	"reflect"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/id"
)

func TestConfigRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PGBinDir = "/usr/lib/postgresql/15/bin"
	cfg.DefaultTenant = id.NewTenantID()
	cfg.Safekeepers.Count = 3
	cfg.Safekeepers.Nodes = []SafekeeperNode{
		{"a:5454", "a:7676", true}, {"b.example:5454", "b.example:7676", false}, {"[::1]:5454", "[::1]:7676", false},
	}
	cfg.Compute = ComputeConfig{ListenAddresses: "127.0.0.1,a", AdvertiseHost: "a", ReplicationFrom: []string{"10.0.0.0/24"}}
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
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("round trip: got %+v, want %+v", got, cfg)
	}
}

// TestConfigOldLayout checks that a config.toml of the one-host layout
// (written before safekeepers had hosts) still loads, to the same
// addresses as before.
func TestConfigOldLayout(t *testing.T) {
	const text = `default_tenant = "0123456789abcdef0123456789abcdef"
pg_bin_dir = "/usr/lib/postgresql/15/bin"
[pageserver]
listen_pg = "127.0.0.1:64000"
listen_http = "127.0.0.1:9898"
local = true
[safekeepers]
count = 3
base_pg_port = 5000
base_http_port = 6000
`
	cfg, err := decodeConfig("config.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []SafekeeperNode{
		{"127.0.0.1:5000", "127.0.0.1:6000", true},
		{"127.0.0.1:5001", "127.0.0.1:6001", true},
		{"127.0.0.1:5002", "127.0.0.1:6002", true},
	}
	if got := cfg.SafekeeperList(); !reflect.DeepEqual(got, want) {
		t.Errorf("safekeepers: got %+v, want %+v", got, want)
	}
	if got, want := cfg.Compute, DefaultConfig().Compute; !reflect.DeepEqual(got, want) {
		t.Errorf("compute: got %+v, want the default %+v", got, want)
	}
}

func TestComputeHBA(t *testing.T) {
	def := computeHBA(DefaultConfig().Compute)
	if def != computeHBALoopback {
		t.Errorf("default pg_hba.conf is not loopback only:\n%s", def)
	}
	for _, tc := range []struct {
		name       string
		c          ComputeConfig
		want, nope []string
	}{
		{"other loopback address", ComputeConfig{ListenAddresses: "127.0.0.6", AdvertiseHost: "127.0.0.6"},
			nil, []string{"samehost", "0.0.0.0/0"}},
		{"network", ComputeConfig{ListenAddresses: "127.0.0.1,10.0.0.1", AdvertiseHost: "10.0.0.1", ReplicationFrom: []string{"10.0.0.0/24"}},
			[]string{"host    all          all   samehost      trust", "host    replication  all   10.0.0.0/24   trust"},
			[]string{"all          all   10.0.0.0/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hba := computeHBA(tc.c)
			if !strings.HasPrefix(hba, computeHBALoopback) {
				t.Errorf("pg_hba.conf lost the loopback lines:\n%s", hba)
			}
			for _, w := range tc.want {
				if !strings.Contains(hba, w+"\n") {
					t.Errorf("pg_hba.conf has no line %q:\n%s", w, hba)
				}
			}
			for _, n := range tc.nope {
				if strings.Contains(hba, n) {
					t.Errorf("pg_hba.conf has %q:\n%s", n, hba)
				}
			}
		})
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
		{"nodes and count disagree", tenant + "[safekeepers]\ncount = 2\n[[safekeepers.node]]\nlisten_pg = 'b:5454'\nlisten_http = 'b:7676'\n", "safekeepers.count = 2, but there are 1"},
		{"node without port", tenant + "[safekeepers]\ncount = 1\n[[safekeepers.node]]\nlisten_pg = 'b'\nlisten_http = 'b:7676'\n", "safekeepers.node[1].listen_pg"},
		{"node unknown key", tenant + "[safekeepers]\ncount = 1\n[[safekeepers.node]]\nlisten_pg = 'b:1'\nlisten_http = 'b:2'\nhost = 'b'\n", "unknown setting"},
		{"nodes share an address", tenant + "[safekeepers]\ncount = 2\n[[safekeepers.node]]\nlisten_pg = 'b:1'\nlisten_http = 'b:2'\n[[safekeepers.node]]\nlisten_pg = 'c:1'\nlisten_http = 'b:2'\n", "safekeepers.node[2].listen_http = \"b:2\": safekeepers.node[1].listen_http has that address"},
		{"compute listens nowhere", tenant + "[compute]\nlisten_addresses = ' , '\n", "compute.listen_addresses"},
		{"compute advertised elsewhere", tenant + "[compute]\nadvertise_host = '10.0.0.1'\n", "compute.advertise_host = \"10.0.0.1\": computes do not listen there"},
		{"compute bad network", tenant + "[compute]\nreplication_from = ['10.0.0.0']\n", "compute.replication_from[1]"},
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
