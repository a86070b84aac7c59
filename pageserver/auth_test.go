package pageserver

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/pageserver/pageservice"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/auth/authtest"
	"github.com/zenithdb/zenith/repo/id"
)

// authFixture is a page server with auth and TLS on, and the keys to talk
// to it.
type authFixture struct {
	ts      *testPageServer
	keys    *authtest.Keys
	tenantA id.TenantID
	tenantB id.TenantID
}

func startAuthPageServer(t *testing.T) *authFixture {
	t.Helper()
	keys := authtest.New(t, "127.0.0.1", "localhost")
	ts := startPageServerWith(t, func(c *Config) {
		c.AuthPublicKey = keys.PublicKey
		c.TLSCert, c.TLSKey = keys.ServerCert, keys.ServerKey
	})
	f := &authFixture{ts: ts, keys: keys, tenantA: id.NewTenantID(), tenantB: id.NewTenantID()}
	for _, tid := range []id.TenantID{f.tenantA, f.tenantB} {
		if _, err := f.exec(f.token(t, auth.AdminClaims(), time.Hour), "tenant_create "+tid.String()); err != nil {
			t.Fatalf("tenant_create with an admin token: %v", err)
		}
	}
	return f
}

func (f *authFixture) token(t *testing.T, c auth.Claims, ttl time.Duration) string {
	t.Helper()
	return f.keys.Token(t, c, ttl)
}

func (f *authFixture) connString(password string) string {
	host, port, _ := net.SplitHostPort(f.ts.pgAddr)
	return fmt.Sprintf("host=%s port=%s user=zenith dbname=pageserver connect_timeout=10 %s", host, port,
		f.keys.Client(password).ConnParams())
}

// exec connects with a token and runs one command, returning the error of
// the connection or of the command.
func (f *authFixture) exec(token, cmd string) ([]*pgconn.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, f.connString(token))
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	return c.Exec(ctx, cmd).ReadAll()
}

var sqlState = authtest.SQLState

// commandSamples is a command line of each page-service command about
// tenant T (replaced by another tenant's id), and whether a tenant's
// token may run it: written here, apart from pageservice.CommandNeeds, so that a
// wrong need in the table fails the test. The test fails on a command
// that has no sample, so a new command cannot skip it.
var commandSamples = map[string]struct {
	line         string
	tenantMayRun bool
}{
	"identify_system": {"identify_system", true},
	"status":          {"status", true},
	"tenant_create":   {"tenant_create", false},
	"tenant_list":     {"tenant_list", false},
	"tenant_delete":   {"tenant_delete T", false},
	"tenant_attach":   {"tenant_attach T 7", false},
	"tenant_detach":   {"tenant_detach T", false},
	"tenant_config":   {"tenant_config T", false},
	"gc":              {"gc T", false},
	"branch_delete":   {"branch_delete T main", false},
	"import":          {"import T newbranch", false},
	"branch_create":   {"branch_create T newbranch main", false},
	"branch_list":     {"branch_list T", false},
	"basebackup":      {"basebackup T main", false},
	"callmemaybe":     {"callmemaybe T main host=127.0.0.1 port=1", false},
	"safekeepers":     {"safekeepers T main 127.0.0.1:1", false},
	"pagestream":      {"pagestream T main", false},
}

// TestPageServiceTenantScope walks the command table: a token for tenant A
// runs no command of tenant B and no admin command (28000), and the
// session of a refused command goes on.
func TestPageServiceTenantScope(t *testing.T) {
	f := startAuthPageServer(t)
	tokA := f.token(t, auth.TenantClaims(f.tenantA), time.Hour)
	names := api.CommandNames()
	sort.Strings(names)
	for _, name := range names {
		need := pageservice.CommandNeeds[name]
		sample, ok := commandSamples[name]
		if !ok {
			t.Errorf("command %s has no sample in commandSamples: add one", name)
			continue
		}
		if need < auth.Public || need > auth.Admin {
			t.Errorf("command %s declares no need", name)
		}
		t.Run(name, func(t *testing.T) {
			cmd := strings.ReplaceAll(sample.line, "T", f.tenantB.String())
			_, err := f.exec(tokA, cmd)
			if !sample.tenantMayRun {
				if got := sqlState(err); got != "28000" {
					t.Fatalf("%s with tenant A's token: got %v (SQLSTATE %q), want 28000", cmd, err, got)
				}
				return
			}
			if code := sqlState(err); code == "28000" || code == "28P01" {
				t.Fatalf("%s with a valid token: got %v, want no auth error", cmd, err)
			}
		})
	}
	// Tenant A's token reaches tenant A: branch_list answers (no branches).
	if _, err := f.exec(tokA, "branch_list "+f.tenantA.String()); err != nil {
		t.Errorf("branch_list of tenant A with A's token: %v", err)
	}
	// And the admin token reaches both.
	admin := f.token(t, auth.AdminClaims(), time.Hour)
	if _, err := f.exec(admin, "branch_list "+f.tenantB.String()); err != nil {
		t.Errorf("branch_list of tenant B with an admin token: %v", err)
	}
}

// TestPageServiceReplicationTenantScope: a replica's replication session
// (replication=true, its timeline named in the startup options) needs a
// token of that timeline's tenant, as the page service's data commands
// do: tenant A's token is refused for tenant B (28000), and passes for
// tenant A (which has no such timeline: 42704).
func TestPageServiceReplicationTenantScope(t *testing.T) {
	f := startAuthPageServer(t)
	tokA := f.token(t, auth.TenantClaims(f.tenantA), time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		tenant id.TenantID
		want   string
	}{{f.tenantB, "28000"}, {f.tenantA, "42704"}} {
		conn, err := pgwire.ConnectReplication(ctx, f.connString(tokA)+fmt.Sprintf(" options='%s'", api.ReplicationOptions(tc.tenant, id.NewTimelineID())))
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.IdentifySystem(ctx)
		if got := sqlState(err); got != tc.want {
			t.Errorf("IDENTIFY_SYSTEM of a timeline of tenant %s with tenant A's token: %v (SQLSTATE %q), want %s", tc.tenant, err, got, tc.want)
		}
		conn.Close(ctx)
	}
}

// TestPageServiceBadTokens checks that each bad token is refused with
// 28P01 and a message naming why, and that the server goes on serving.
func TestPageServiceBadTokens(t *testing.T) {
	f := startAuthPageServer(t)
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.Issue(otherKey, auth.AdminClaims(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := auth.Issue(f.keys.Private, auth.AdminClaims(), time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token, want string
	}{
		{"none", "", "no token given"},
		{"expired", expired, "token has expired"},
		{"other key", other, "signature is not valid"},
		{"malformed", "hello", "malformed token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.exec(tt.token, "status")
			if got := sqlState(err); got != "28P01" || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v (SQLSTATE %q), want 28P01 saying %q", err, got, tt.want)
			}
		})
	}
	if _, err := f.exec(f.token(t, auth.AdminClaims(), time.Hour), "status"); err != nil {
		t.Fatalf("a good token after the bad ones: %v", err)
	}
}

// TestPageServiceTLS checks psql with sslmode=verify-full against the
// local CA, and that a plaintext session is refused.
func TestPageServiceTLS(t *testing.T) {
	f := startAuthPageServer(t)
	psql := "/usr/lib/postgresql/15/bin/psql"
	if _, err := os.Stat(psql); err != nil {
		t.Skip("no psql:", err)
	}
	host, port, _ := net.SplitHostPort(f.ts.pgAddr)
	tok := f.token(t, auth.TenantClaims(f.tenantA), time.Hour)
	dsn := fmt.Sprintf("host=%s port=%s user=zenith dbname=pageserver sslmode=verify-full sslrootcert=%s",
		host, port, f.keys.CA)
	cmd := osexec.Command(psql, dsn, "-XAt", "-c", "branch_list "+f.tenantA.String(), "-c", "identify_system")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+tok)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "zenith-pageserver") {
		t.Fatalf("psql verify-full: %v\n%s", err, out)
	}
	plain := fmt.Sprintf("host=%s port=%s user=zenith dbname=pageserver sslmode=disable password=%s", host, port, tok)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, plain)
	if err == nil {
		c.Close(ctx)
		t.Fatal("a plaintext session: connected, want it refused")
	}
	if got := sqlState(err); got != "28000" || !strings.Contains(err.Error(), "requires TLS") {
		t.Fatalf("plaintext session: got %v (SQLSTATE %q), want 28000 saying TLS is required", err, got)
	}
}

// TestHTTPRouteScopes walks every registered HTTP route: without a token
// each is refused (401) unless public, and with tenant A's token each
// route of tenant B or of management is refused (403).
func TestHTTPRouteScopes(t *testing.T) {
	f := startAuthPageServer(t)
	client := f.keys.HTTPClient(t)
	mux := auth.NewMux(nil)
	httpapi.New(f.ts.srv.httpAPIConfig()).Routes(mux)
	tokA := f.token(t, auth.TenantClaims(f.tenantA), time.Hour)
	public := map[string]bool{}
	wantPublic := map[string]bool{"GET /v1/status": true, "GET /metrics": true}
	for _, r := range mux.Routes() {
		method, path, _ := strings.Cut(r.Pattern, " ")
		path = strings.NewReplacer("{tenant}", f.tenantB.String(), "{timeline}", "main").Replace(path)
		if r.Need == auth.Public {
			public[r.Pattern] = true
		}
		for _, tc := range []struct {
			token string
			want  int
		}{
			{"", http.StatusUnauthorized},
			{"garbage", http.StatusUnauthorized},
			{tokA, http.StatusForbidden},
		} {
			got := authtest.Status(t, client, method, "https://"+f.ts.httpAddr+path, tc.token, strings.NewReader("{}"))
			// Every route but the public ones is about tenant B or
			// management: tenant A's token reaches none of them.
			isPublic := wantPublic[r.Pattern]
			switch {
			case isPublic && (got == http.StatusUnauthorized || got == http.StatusForbidden):
				t.Errorf("%s (public) with token %.8q: got %d", r.Pattern, tc.token, got)
			case !isPublic && got != tc.want:
				t.Errorf("%s (needs %v) with token %.8q: got %d, want %d", r.Pattern, r.Need, tc.token, got, tc.want)
			}
		}
	}
	// Exactly the documented public routes are public.
	if fmt.Sprint(public) != fmt.Sprint(wantPublic) {
		t.Errorf("public routes: got %v, want %v", public, wantPublic)
	}
	// Plain HTTP to a TLS listener does not reach a handler.
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + f.ts.httpAddr + "/v1/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP: got 200, want it refused")
		}
	}
}
