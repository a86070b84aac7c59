package control_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
)

// defaultTenant reads the repository's default tenant from config.toml.
func defaultTenant(t *testing.T, env *zenithtest.Env) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.RepoDir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^default_tenant = ['"]([0-9a-f]{32})['"]`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("config.toml has no default_tenant:\n%s", b)
	}
	return string(m[1])
}

func pageserviceExec(connStr, cmd string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, connStr)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, cmd).ReadAll()
	return err
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestSecureQuickStart runs the quick start with --auth --tls and three
// safekeepers: the page server, the safekeepers and zenith itself reach
// each other with tokens over verified TLS, a compute writes and a new
// one reads the rows back from the page server. Then a user's tokens:
// the tenant's own reaches its branches, another tenant's, an expired
// one, one of another key and none are refused with the SQLSTATE and
// the reason, over libpq and HTTP, and everything goes on working.
func TestSecureQuickStart(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 3, Secure: true})
	tenant := defaultTenant(t, env)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (x int)")
	exec1(t, conn, "INSERT INTO t SELECT generate_series(1, 1000)")
	pg.Stop()
	pg2 := env.Postgres.CreateStart("main", "--name", "second")
	var n int
	if err := pg2.Connect().QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("a new compute of main: count %d, %v; want 1000 rows", n, err)
	}

	key, err := auth.LoadPrivateKey(filepath.Join(env.RepoDir, auth.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := auth.Issue(key, auth.AdminClaims(), time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := auth.Issue(otherKey, auth.AdminClaims(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	own := env.Token("--tenant", tenant, "--ttl", "10m")
	other := env.Token("--tenant", id.NewTenantID().String())
	admin := env.Token("--admin")
	cmd := "branch_list " + tenant
	tests := []struct {
		name, token, code, says string
	}{
		{"the tenant's token", own, "", ""},
		{"an admin token", admin, "", ""},
		{"another tenant's token", other, "28000", "not " + tenant},
		{"an expired token", expired, "28P01", "expired"},
		{"another key's token", foreign, "28P01", "signature is not valid"},
		{"no token", "", "28P01", "no token"},
		{"a malformed token", "abc", "28P01", "malformed"},
	}
	for _, tt := range tests {
		err := pageserviceExec(env.PageserverConnString(tt.token), cmd)
		if got := sqlstate(err); got != tt.code || (err != nil && !strings.Contains(err.Error(), tt.says)) {
			t.Errorf("%s with %s: got %v (SQLSTATE %q), want SQLSTATE %q saying %q", cmd, tt.name, err, got, tt.code, tt.says)
		}
	}
	plain := strings.Replace(env.PageserverConnString(own), "sslmode=verify-full", "sslmode=disable", 1)
	if err := pageserviceExec(plain, cmd); sqlstate(err) != "28000" {
		t.Errorf("plaintext session: got %v, want it refused (28000)", err)
	}

	// The HTTP API: the page server's address is in config.toml.
	b, err := os.ReadFile(filepath.Join(env.RepoDir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*listen_http = ['"]([^'"]+)['"]`).FindSubmatch(b)
	if m == nil {
		t.Fatal("config.toml has no pageserver listen_http")
	}
	tc, err := auth.ClientTLS(env.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	for _, hc := range []struct {
		path, token string
		want        int
	}{
		{"/v1/tenant", admin, 200},
		{"/v1/tenant", own, 403},
		{"/v1/tenant", "", 401},
		{"/v1/tenant", expired, 401},
		{"/v1/tenant/" + tenant + "/branch", own, 200},
		{"/v1/tenant/" + tenant + "/branch", other, 403},
		{"/v1/status", "", 200},
		{"/metrics", "", 200},
	} {
		req, err := http.NewRequest(http.MethodGet, "https://"+string(m[1])+hc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		auth.SetBearer(req, hc.token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", hc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != hc.want {
			t.Errorf("GET %s with token %.8q: got %d, want %d", hc.path, hc.token, resp.StatusCode, hc.want)
		}
	}

	// After all that, the services still serve: the compute writes, and
	// zenith status reaches every service.
	exec1(t, pg2.Connect(), "INSERT INTO t VALUES (1001)")
	if out := env.Zenith("status"); strings.Count(out, "running") < 4 {
		t.Errorf("zenith status after the refused clients:\n%s", out)
	}
}
