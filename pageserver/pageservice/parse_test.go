package pageservice

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
)

const (
	tenantHex   = "0123456789abcdef0123456789abcdef"
	timelineHex = "fedcba9876543210fedcba9876543210"
)

func TestParseCommandRejects(t *testing.T) {
	for _, c := range []struct {
		line string
		args []string
		code string
	}{
		{"", nil, "42601"},
		{"select 1", nil, "42601"},
		{"status now", nil, "42601"},
		{"tenant_list x", nil, "42601"},
		{"tenant_create a b c", nil, "42601"},
		{"tenant_create " + tenantHex + " 0", nil, "22023"},
		{"tenant_create " + tenantHex + " -1", nil, "22023"},
		{"tenant_attach " + tenantHex, nil, "42601"},
		{"tenant_attach " + tenantHex + " 0", nil, "22023"},
		{"tenant_attach " + tenantHex + " 4294967296", nil, "22023"},
		{"tenant_detach", nil, "42601"},
		{"tenant_create 0123", nil, "22023"},
		{"tenant_create " + tenantHex + "00", nil, "22023"},
		{"tenant_create $2", []string{tenantHex}, "42P02"},
		{"import " + tenantHex, nil, "42601"},
		{"import " + tenantHex + " " + timelineHex, nil, "22023"},
		{"import " + tenantHex + " a/b", nil, "22023"},
		{"import " + tenantHex + " " + strings.Repeat("x", 64), nil, "22023"},
		{"branch_create " + tenantHex + " dev", nil, "42601"},
		{"branch_create " + tenantHex + " dev main@", nil, "22023"},
		{"branch_create " + tenantHex + " dev main@0/0", nil, "22023"},
		{"branch_create " + tenantHex + " dev main@10/20/30", nil, "22023"},
		{"branch_create " + tenantHex + " dev main@1G/0", nil, "22023"},
		{"branch_create " + tenantHex + " dev main@2021-06-01", nil, "22023"},
		{"branch_create " + tenantHex + " dev @0/1", nil, "22023"},
		{"basebackup " + tenantHex + " main 0/1 0/2", nil, "22023"},
		{"basebackup " + tenantHex + " main 0/1 lazy x", nil, "42601"},
		{"basebackup " + tenantHex + " main 123", nil, "22023"},
		{"basebackup " + tenantHex + " .. ", nil, "22023"},
		{"callmemaybe " + tenantHex + " main ''", nil, "22023"},
		{"safekeepers " + tenantHex + " main", nil, "42601"},
		{"safekeepers " + tenantHex + " main a:1 b:2", nil, "42601"},
		{"safekeepers " + tenantHex + " main a", nil, "22023"},
		{"safekeepers " + tenantHex + " main a:1,", nil, "22023"},
		{"safekeepers " + tenantHex + " main a:0", nil, "22023"},
		{"safekeepers " + tenantHex + " main a:65536", nil, "22023"},
		{"safekeepers " + tenantHex + " main a:x", nil, "22023"},
		{"safekeepers " + tenantHex + " main :1", nil, "22023"},
		{"safekeepers " + tenantHex + " main a:1,a:1", nil, "22023"},
		{"safekeepers $1 main $2", []string{tenantHex, "h'x:1"}, "22023"},
		{"safekeepers $1 main $2", []string{tenantHex, "h x:1"}, "22023"},
		{"pagestream " + tenantHex, nil, "42601"},
		{"pagestream " + tenantHex + " main x", nil, "42601"},
	} {
		_, err := parseCommand(c.line, c.args)
		var pe *pgwire.Error
		if !errors.As(err, &pe) || pe.Code != c.code {
			t.Errorf("%q: got %v, want SQLSTATE %s", c.line, err, c.code)
		}
	}
}

func FuzzPageServiceCommand(f *testing.F) {
	for _, s := range []string{
		"identify_system", "status", "tenant_create", "tenant_create " + tenantHex, "tenant_list",
		"import " + tenantHex + " main", "branch_create " + tenantHex + " dev main@0/16B3748",
		"branch_create " + tenantHex + " dev " + timelineHex + "@2021-06-01T12:00:00.5+02:00",
		"branch_list " + tenantHex, "basebackup " + tenantHex + " main 0/1", "callmemaybe $1 $2 'host=x'",
		"pagestream " + tenantHex + " " + timelineHex, "basebackup $1 $2 $3", "callmemaybe a b \t c",
		"safekeepers $1 $2 127.0.0.1:1,[::1]:2", "safekeepers " + tenantHex + " main sk:5454",
	} {
		f.Add(s, tenantHex)
	}
	f.Fuzz(func(t *testing.T, line, arg string) {
		c, err := parseCommand(line, []string{arg, timelineHex, "0/1"})
		if err != nil {
			var pe *pgwire.Error
			if !errors.As(err, &pe) || (pe.Code != "42601" && pe.Code != "22023" && pe.Code != "42P02") {
				t.Fatalf("%q: error %v is not a syntax or parameter error", line, err)
			}
			return
		}
		if _, ok := CommandNeeds[c.Name()]; !ok {
			t.Fatalf("%q parsed as command %q, which declares no need of a token", line, c.Name())
		}
		if sk, ok := c.(api.Safekeepers); ok {
			// Every address is safe inside a connection string.
			set := &walreceiver.SafekeeperSet{Addrs: sk.Addrs}
			for _, a := range sk.Addrs {
				if _, err := pgconn.ParseConfig(set.ConnString(a, id.NewTimelineID(), 7, auth.ClientOptions{Token: `a'b\\c`})); err != nil {
					t.Fatalf("%q: the connection string for %q: %v", line, a, err)
				}
			}
		}
	})
}
