package api

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/id"
)

const tenantHex = "0123456789abcdef0123456789abcdef"

func TestParseCommand(t *testing.T) {
	tenant, _ := id.ParseTenantID(tenantHex)
	at := time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)
	horizon, pitr := int64(1<<20), 90*time.Minute
	for _, c := range []struct {
		line string
		args []string
		want Command
	}{
		{line: "IDENTIFY_SYSTEM", want: IdentifySystem{}},
		{line: "  status  ", want: Status{}},
		{line: "tenant_create", want: TenantCreate{}},
		{line: "tenant_create " + tenantHex, want: TenantCreate{Tenant: tenant}},
		{line: "tenant_create $1", args: []string{tenantHex}, want: TenantCreate{Tenant: tenant}},
		{line: "tenant_create " + tenantHex + " 7", want: TenantCreate{Tenant: tenant, Generation: 7}},
		{line: "tenant_attach " + tenantHex + " 2", want: TenantAttach{Tenant: tenant, Generation: 2}},
		{line: "tenant_detach " + tenantHex, want: TenantDetach{Tenant: tenant}},
		{line: "tenant_list", want: TenantList{}},
		{line: "tenant_delete " + tenantHex, want: TenantDelete{Tenant: tenant}},
		{line: "gc " + tenantHex, want: GC{Tenant: tenant}},
		{line: "tenant_config " + tenantHex, want: TenantConfig{Tenant: tenant}},
		{line: "tenant_config " + tenantHex + " pitr_interval=1h30m gc_horizon=1048576", want: TenantConfig{Tenant: tenant, Change: RetentionChange{GCHorizon: &horizon, PITRInterval: &pitr}}},
		{line: "import " + tenantHex + " main", want: Import{Tenant: tenant, Branch: "main"}},
		{line: "branch_create " + tenantHex + " dev main", want: BranchCreate{Tenant: tenant, Branch: "dev", Start: StartPoint{Branch: "main"}}},
		{line: "branch_create " + tenantHex + " dev main@16/B374D848", want: BranchCreate{Tenant: tenant, Branch: "dev", Start: StartPoint{Branch: "main", LSN: 0x16B374D848}}},
		{line: "branch_create " + tenantHex + " dev " + timelineHex + "@2021-06-01T12:00:00Z", want: BranchCreate{Tenant: tenant, Branch: "dev", Start: StartPoint{Branch: timelineHex, Time: at}}},
		{line: "branch_create " + tenantHex + " dev main@2021-06-01T14:00:00+02:00", want: BranchCreate{Tenant: tenant, Branch: "dev", Start: StartPoint{Branch: "main", Time: at}}},
		{line: "branch_list " + tenantHex, want: BranchList{Tenant: tenant}},
		{line: "branch_list " + tenantHex + " main", want: BranchList{Tenant: tenant, Branch: "main"}},
		{line: "branch_list $1 $2", args: []string{tenantHex, timelineHex}, want: BranchList{Tenant: tenant, Branch: timelineHex}},
		{line: "branch_delete " + tenantHex + " dev", want: BranchDelete{Tenant: tenant, Timeline: "dev"}},
		{line: "basebackup " + tenantHex + " main", want: Basebackup{Tenant: tenant, Timeline: "main"}},
		{line: "basebackup $1 $2 $3", args: []string{tenantHex, timelineHex, "0/16B3748"}, want: Basebackup{Tenant: tenant, Timeline: timelineHex, LSN: 0x16B3748}},
		{line: "basebackup " + tenantHex + " main lazy", want: Basebackup{Tenant: tenant, Timeline: "main", Lazy: true}},
		{line: "basebackup " + tenantHex + " main 0/16B3748 lazy", want: Basebackup{Tenant: tenant, Timeline: "main", LSN: 0x16B3748, Lazy: true}},
		{line: "callmemaybe " + tenantHex + " main host=127.0.0.1  port=5432 user=postgres", want: CallMeMaybe{Tenant: tenant, Timeline: "main", ConnStr: "host=127.0.0.1  port=5432 user=postgres"}},
		{line: "callmemaybe " + tenantHex + " main 'host=h port=1'", want: CallMeMaybe{Tenant: tenant, Timeline: "main", ConnStr: "host=h port=1"}},
		{line: "callmemaybe $1 $2 $3", args: []string{tenantHex, "main", "host=h port=1"}, want: CallMeMaybe{Tenant: tenant, Timeline: "main", ConnStr: "host=h port=1"}},
		{line: "safekeepers " + tenantHex + " main 127.0.0.1:5454", want: Safekeepers{Tenant: tenant, Timeline: "main", Addrs: []string{"127.0.0.1:5454"}}},
		{line: "safekeepers " + tenantHex + " " + timelineHex + " sk1:1,sk-2.example.com:2,[::1]:3", want: Safekeepers{Tenant: tenant, Timeline: timelineHex, Addrs: []string{"sk1:1", "sk-2.example.com:2", "[::1]:3"}}},
		{line: "safekeepers $1 $2 $3", args: []string{tenantHex, "main", "a:1,b:2"}, want: Safekeepers{Tenant: tenant, Timeline: "main", Addrs: []string{"a:1", "b:2"}}},
		{line: "pagestream " + tenantHex + " " + timelineHex, want: PageStream{Tenant: tenant, Timeline: timelineHex}},
	} {
		got, err := ParseCommand(c.line, c.args)
		if err != nil {
			t.Errorf("%q: %v", c.line, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\ngot  %#v\nwant %#v", c.line, got, c.want)
		}
	}
}

// TestCommandRoundTrip writes each command and reads it back: what a
// client writes is what the server reads.
func TestCommandRoundTrip(t *testing.T) {
	tenant := id.NewTenantID()
	horizon, pitr := int64(0), 24*time.Hour
	for _, c := range []Command{
		IdentifySystem{}, Status{}, TenantList{},
		TenantCreate{}, TenantCreate{Tenant: tenant}, TenantCreate{Tenant: tenant, Generation: 3},
		TenantAttach{Tenant: tenant, Generation: 1}, TenantDetach{Tenant: tenant},
		TenantDelete{Tenant: tenant}, GC{Tenant: tenant},
		TenantConfig{Tenant: tenant},
		TenantConfig{Tenant: tenant, Change: RetentionChange{GCHorizon: &horizon}},
		TenantConfig{Tenant: tenant, Change: RetentionChange{GCHorizon: &horizon, PITRInterval: &pitr}},
		Import{Tenant: tenant, Branch: "main"},
		BranchCreate{Tenant: tenant, Branch: "dev", Start: StartPoint{Branch: "main"}},
		BranchCreate{Tenant: tenant, Branch: "dev.2", Start: StartPoint{Branch: timelineHex, LSN: 0x16B9188}},
		BranchCreate{Tenant: tenant, Branch: "at-noon", Start: StartPoint{Branch: "main", Time: time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.UTC)}},
		BranchList{Tenant: tenant},
		BranchDelete{Tenant: tenant, Timeline: "dev"}, BranchDelete{Tenant: tenant, Timeline: timelineHex},
		Basebackup{Tenant: tenant, Timeline: "main"},
		Basebackup{Tenant: tenant, Timeline: timelineHex, LSN: 0x16B9188},
		Basebackup{Tenant: tenant, Timeline: "main", Lazy: true},
		Basebackup{Tenant: tenant, Timeline: "lazy", LSN: 1, Lazy: true},
		CallMeMaybe{Tenant: tenant, Timeline: "main", ConnStr: "host=127.0.0.1 port=5432 user=zenith_admin"},
		CallMeMaybe{Tenant: tenant, Timeline: "main", ConnStr: "host=h password='a b' options='-c x=1'"},
		CallMeMaybe{Tenant: tenant, Timeline: "main", ConnStr: "  $1 "},
		Safekeepers{Tenant: tenant, Timeline: "main", Addrs: []string{"127.0.0.1:5454"}},
		Safekeepers{Tenant: tenant, Timeline: timelineHex, Addrs: []string{"sk1:1", "[::1]:2"}},
		PageStream{Tenant: tenant, Timeline: "main"},
	} {
		s := c.String()
		if name, _, _ := strings.Cut(s, " "); name != c.Name() {
			t.Errorf("%#v: String %q does not start with its name %q", c, s, c.Name())
		}
		got, err := ParseCommand(s, nil)
		if err != nil {
			t.Errorf("%#v: %q: %v", c, s, err)
			continue
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%q:\ngot  %#v\nwant %#v", s, got, c)
		}
		if got.TenantID() != c.TenantID() {
			t.Errorf("%q: tenant %s, want %s", s, got.TenantID(), c.TenantID())
		}
	}
}

// TestEveryCommandHasAType parses a sample of every command of the grammar
// and checks the type it parses to; a new command fails here until it has
// a sample.
func TestEveryCommandHasAType(t *testing.T) {
	samples := map[string]string{
		"identify_system": "identify_system", "status": "status", "tenant_create": "tenant_create",
		"tenant_attach": "tenant_attach T 1", "tenant_detach": "tenant_detach T",
		"tenant_list": "tenant_list", "tenant_delete": "tenant_delete T", "gc": "gc T",
		"tenant_config": "tenant_config T", "import": "import T b", "branch_create": "branch_create T b main",
		"branch_list": "branch_list T", "branch_delete": "branch_delete T b", "basebackup": "basebackup T b",
		"callmemaybe": "callmemaybe T b host=h", "safekeepers": "safekeepers T b h:1", "pagestream": "pagestream T b",
	}
	for _, name := range CommandNames() {
		line, ok := samples[name]
		if !ok {
			t.Errorf("command %s has no sample here: add one", name)
			continue
		}
		c, err := ParseCommand(strings.ReplaceAll(line, "T", tenantHex), nil)
		if err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		if c.Name() != name {
			t.Errorf("%s parsed as %T named %s", line, c, c.Name())
		}
		if strings.Contains(line, " T") && c.TenantID().String() != tenantHex {
			t.Errorf("%s: tenant %s, want %s", line, c.TenantID(), tenantHex)
		}
	}
}

func TestParseCommandErrors(t *testing.T) {
	for _, c := range []struct {
		line string
		args []string
		kind error
		msg  string
	}{
		{"", nil, ErrCommandSyntax, "empty command"},
		{"select 1", nil, ErrCommandSyntax, `unknown command "select"`},
		{"status now", nil, ErrCommandSyntax, "status takes 0 arguments, got 1"},
		{"tenant_config a b c d", nil, ErrCommandSyntax, "tenant_config takes 1 to 3 arguments, got 4"},
		{"callmemaybe a b", nil, ErrCommandSyntax, "callmemaybe takes at least 3 arguments, got 2"},
		{"tenant_create 0123", nil, ErrCommandArgument, "0123"},
		{"tenant_create $2", []string{tenantHex}, ErrNoParameter, "there is no parameter $2"},
		{"tenant_attach " + tenantHex + " 0", nil, ErrCommandArgument, "want a decimal number, 1 or more"},
		{"tenant_create " + tenantHex + " x", nil, ErrCommandArgument, `generation "x"`},
		{"basebackup " + tenantHex + " main 0/0", nil, ErrCommandArgument, "LSN 0/0 is not a position in the WAL"},
		{"basebackup " + tenantHex + " main 0/1 0/2", nil, ErrCommandArgument, `basebackup's fourth argument is "0/2", want lazy`},
		{"callmemaybe " + tenantHex + " main ''", nil, ErrCommandArgument, "empty connection string"},
		{"safekeepers " + tenantHex + " main a:1,a:1", nil, ErrCommandArgument, "safekeeper a:1 given twice"},
		{"import " + tenantHex + " " + timelineHex, nil, ErrCommandArgument, "reads as a timeline id"},
	} {
		_, err := ParseCommand(c.line, c.args)
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, c.kind) || !strings.Contains(pe.Message, c.msg) {
			t.Errorf("%q: got %v, want a %v error saying %q", c.line, err, c.kind, c.msg)
		}
	}
}

// FuzzParseCommand checks that what parses writes back as a line that
// parses to the same command, and that every refusal is a *ParseError.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"identify_system", "status", "tenant_create", "tenant_create " + tenantHex, "tenant_list",
		"tenant_config " + tenantHex + " gc_horizon=1 pitr_interval=1h",
		"import " + tenantHex + " main", "branch_create " + tenantHex + " dev main@0/16B3748",
		"branch_create " + tenantHex + " dev " + timelineHex + "@2021-06-01T12:00:00.5+02:00",
		"branch_list " + tenantHex, "branch_list $1 main", "basebackup " + tenantHex + " main 0/1 lazy", "callmemaybe $1 $2 'host=x'",
		"pagestream " + tenantHex + " " + timelineHex, "basebackup $1 $2 $3", "callmemaybe a b \t c",
		"safekeepers $1 $2 127.0.0.1:1,[::1]:2", "branch_delete $1 $2", "gc $1", "tenant_delete $1",
	} {
		f.Add(s, tenantHex)
	}
	f.Fuzz(func(t *testing.T, line, arg string) {
		c, err := ParseCommand(line, []string{arg, timelineHex, "0/1"})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%q: error %v is not a *ParseError", line, err)
			}
			return
		}
		s := c.String()
		back, err := ParseCommand(s, nil)
		if err != nil {
			t.Fatalf("%q parsed as %#v, written %q, which does not parse: %v", line, c, s, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("%q parsed as %#v, written %q, read back as %#v", line, c, s, back)
		}
	})
}
