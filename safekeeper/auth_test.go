package safekeeper

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/auth/authtest"
	"github.com/zenithdb/zenith/repo/id"
)

// secureSet is a testSet of three safekeepers with auth and TLS on, which
// present an admin token to each other.
type secureSet struct {
	*testSet
	keys *authtest.Keys
}

func newSecureSet(t *testing.T) *secureSet {
	t.Helper()
	keys := authtest.New(t, "127.0.0.1")
	v, err := auth.LoadVerifier(keys.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := auth.ServerTLS(keys.ServerCert, keys.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ss := &secureSet{testSet: newTestSet(t, 3), keys: keys}
	admin := ss.token(t, auth.AdminClaims())
	ss.configure = func(c *Config) {
		c.Verifier, c.TLS = v, srvTLS
		c.Client = keys.Client(admin)
	}
	for i := range ss.nodes {
		ss.start(i)
	}
	return ss
}

func (ss *secureSet) token(t *testing.T, c auth.Claims) string {
	t.Helper()
	return ss.keys.Token(t, c, time.Hour)
}

func (ss *secureSet) client(token string) auth.ClientOptions { return ss.keys.Client(token) }

// exec runs one command on safekeeper i with a token; params are extra
// startup parameters (a replication session's timeline).
func (ss *secureSet) exec(i int, token, params, cmd string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, peerConnString(ss.nodes[i].pgAddr, ss.client(token))+" "+params)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, cmd).ReadAll()
	return err
}

var sqlState = authtest.SQLState

// TestSecureElectionAndPeers: with auth and TLS on, an election with an
// admin token over verified TLS succeeds on all three, and each safekeeper
// reads its peers' status with its own token.
func TestSecureElectionAndPeers(t *testing.T) {
	ss := newSecureSet(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := zerolog.New(zerolog.NewTestWriter(t))
	e, err := Elect(ctx, ss.addrs(), ss.tenant, ss.timeline, ss.client(ss.token(t, auth.AdminClaims())), log)
	if err != nil {
		t.Fatalf("election with an admin token: %v", err)
	}
	for _, st := range e.Safekeepers {
		if !st.Joined {
			t.Errorf("safekeeper %s did not join: %v", st.Addr, st.Err)
		}
	}
	if _, err := Elect(ctx, ss.addrs(), ss.tenant, ss.timeline, ss.client(ss.token(t, auth.TenantClaims(ss.tenant))), log); err == nil ||
		!strings.Contains(err.Error(), "needs an admin token") {
		t.Errorf("election with a tenant token: got %v, want it refused for want of an admin token", err)
	}
	sk := ss.nodes[0].sk
	client, err := peerHTTPClient(sk.cfg.Client)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range sk.peerStates(ctx, client) {
		if len(st) != 1 {
			t.Errorf("peer %s: got %d timelines, want 1 (the poll failed?)", sk.cfg.Peers[i], len(st))
		}
	}
}

// commandSamples is a command of each safekeeper command about tenant {T},
// with the startup parameters of its session: a token for another tenant
// runs none of them ({T} and {L} stand for the tenant and timeline). A command without a sample fails the test.
var commandSamples = map[string]struct{ params, line string }{
	"greet":                   {"", "greet {T} {L}"},
	"vote":                    {"", "vote {T} {L} 9"},
	"elected":                 {"", "elected {T} {L} 9 0/0 0/0 -"},
	"compute":                 {"", "compute {T} {L} 9 0/1000000 host=127.0.0.1"},
	"read_wal":                {"", "read_wal {T} {L} 0/0 0/0"},
	"IDENTIFY_SYSTEM":         {"options='-c tenant_id={T} -c timeline_id={L}'", "IDENTIFY_SYSTEM"},
	"START_REPLICATION":       {"options='-c tenant_id={T} -c timeline_id={L}'", "START_REPLICATION 0/0"},
	"CREATE_REPLICATION_SLOT": {"options='-c tenant_id={T} -c timeline_id={L}'", "CREATE_REPLICATION_SLOT s PHYSICAL"},
	"SHOW":                    {"options='-c tenant_id={T} -c timeline_id={L}'", "SHOW wal_segment_size"},
}

// TestSafekeeperTenantScope walks commandNeeds with a token for another
// tenant: every command is refused with 28000.
func TestSafekeeperTenantScope(t *testing.T) {
	ss := newSecureSet(t)
	other := ss.token(t, auth.TenantClaims(id.NewTenantID()))
	var names []string
	for name := range commandNeeds {
		names = append(names, name)
	}
	sort.Strings(names)
	r := strings.NewReplacer("{T}", ss.tenant.String(), "{L}", ss.timeline.String())
	for _, name := range names {
		s, ok := commandSamples[name]
		if !ok {
			t.Errorf("command %s has no sample in commandSamples: add one", name)
			continue
		}
		err := ss.exec(0, other, r.Replace(s.params), r.Replace(s.line))
		if got := sqlState(err); got != "28000" {
			t.Errorf("%s with another tenant's token: got %v (SQLSTATE %q), want 28000", name, err, got)
		}
	}
	// The tenant's own token reads its timeline (which does not exist yet:
	// past auth, the command itself answers).
	own := ss.token(t, auth.TenantClaims(ss.tenant))
	if err := ss.exec(0, own, "", r.Replace("read_wal {T} {L} 0/0 0/0")); sqlState(err) == "28000" {
		t.Errorf("read_wal with the tenant's token: %v", err)
	}
	// Bad tokens: 28P01 naming why, and the safekeeper goes on.
	for _, tc := range []struct{ token, want string }{{"", "no token"}, {"x.y.z", "malformed"}} {
		err := ss.exec(0, tc.token, "", "greet")
		if sqlState(err) != "28P01" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("token %q: got %v, want 28P01 saying %q", tc.token, err, tc.want)
		}
	}
	// Plaintext is refused.
	host, port, _ := net.SplitHostPort(ss.nodes[0].pgAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s sslmode=disable password=%s", host, port, own)); err == nil {
		c.Close(ctx)
		t.Error("plaintext session: connected, want it refused")
	} else if sqlState(err) != "28000" {
		t.Errorf("plaintext session: got %v, want 28000", err)
	}
}

// TestSafekeeperHTTPScopes walks every HTTP route with another tenant's
// token: each but /metrics is refused (403), and without a token (401).
func TestSafekeeperHTTPScopes(t *testing.T) {
	ss := newSecureSet(t)
	client := ss.keys.HTTPClient(t)
	mux := auth.NewMux(nil)
	ss.nodes[0].sk.routes(mux)
	other := ss.token(t, auth.TenantClaims(id.NewTenantID()))
	for _, r := range mux.Routes() {
		method, path, _ := strings.Cut(r.Pattern, " ")
		path = strings.NewReplacer("{tenant}", ss.tenant.String(), "{timeline}", ss.timeline.String()).Replace(path)
		for _, c := range []struct {
			token string
			want  int
		}{{"", http.StatusUnauthorized}, {other, http.StatusForbidden}} {
			got := authtest.Status(t, client, method, "https://"+ss.nodes[0].httpAddr+path, c.token, nil)
			if r.Pattern == "GET /metrics" {
				if got != http.StatusOK {
					t.Errorf("%s (public): got %d, want 200", r.Pattern, got)
				}
				continue
			}
			if got != c.want {
				t.Errorf("%s with token %.8q: got %d, want %d", r.Pattern, c.token, got, c.want)
			}
		}
	}
}
