package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/control/lazyfs"
	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// nodeTokenFile is the name of a compute node's token file, which zenith
// pg start writes and zenith pg stop removes.
const nodeTokenFile = "page_service_token"

// jwtPattern matches a JWT (three base64url parts, the first two JSON
// objects).
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// privatePEM matches the start of a PEM private key of any kind.
var privatePEM = regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`)

// TestSecureLazyCompute runs a lazy compute on a repository made with
// --auth --tls: its FUSE server fetches pages over TLS with a token of
// the node's tenant, which zenith pg start minted and stored 0600 in the
// node's directory. The compute writes; destroyed and recreated, a new
// lazy compute reads every row back. The node's token reaches its own
// tenant's pages and nothing else (another tenant's pages and the admin
// commands are refused with SQLSTATE 28000); no file of the node holds
// an admin token or a private key; the compute's pg_hba.conf trusts
// loopback only; a stopped node holds no token; a FUSE server whose
// token is refused fails to start, naming the SQLSTATE.
func TestSecureLazyCompute(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := zenithtest.New(t, &zenithtest.Options{Secure: true})
	tenant := defaultTenant(t, env)

	pg := env.Postgres.CreateStart("main")
	if n := listNode(t, env, "main"); n.Mode != "lazy" || n.Status != "running" {
		t.Fatalf("pg start on a repository with --auth --tls made a %s node, %s; want lazy, running", n.Mode, n.Status)
	}
	conn := pg.Connect()
	if _, err := conn.Exec(ctx, "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 100000) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	nodeDir := filepath.Join(env.RepoDir, "pgdatadirs", "tenants", tenant, "main")
	tokenPath := filepath.Join(nodeDir, nodeTokenFile)
	st, err := os.Stat(tokenPath)
	if err != nil {
		t.Fatalf("a running lazy node has no token: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %04o, want 0600", tokenPath, st.Mode().Perm())
	}
	b, err := os.ReadFile(tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))
	checkNodeToken(t, env, token, tenant)
	checkNodeHoldsNoSecret(t, env, nodeDir, tenant)
	checkLoopbackHBA(ctx, t, pg)

	// The token in the FUSE server's hands: its own tenant's pages, and
	// nothing of another tenant or of management.
	lazyDir := filepath.Join(nodeDir, "lazy")
	other, otherTimeline := checkNodeTokenReach(ctx, t, env, tenant, lazyDir, tokenPath, token)

	pg.Stop()
	if _, err := os.Stat(tokenPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a stopped node still holds its token: %v", err)
	}

	// A FUSE server whose token the page server refuses says so and
	// mounts nothing, rather than serving I/O errors.
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(env.Token("--tenant", tenant)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := env.Run("pg", "fuse", "--dir", nodeDir, "--pageserver", env.PageserverAddr, "--tenant", other, "--timeline", otherTimeline,
		"--ca-file", env.CAFile(), "--token-file", tokFile)
	if err == nil || !strings.Contains(stderr, "SQLSTATE 28000") {
		t.Errorf("zenith pg fuse with a token of another tenant: %v, stderr %q; want a failure naming SQLSTATE 28000", err, stderr)
	}
	t.Logf("zenith pg fuse with a token of another tenant: %s", strings.TrimSpace(stderr))
	if m := mountsIn(env.Dir); len(m) > 0 {
		t.Fatalf("a refused FUSE server left %v mounted", m)
	}
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if n := listNode(t, env, "main"); n.Mode != "lazy" {
		t.Fatalf("the recreated node is %s, want lazy", n.Mode)
	}
	var n int
	var sum int64
	if err := pg.Connect().QueryRow(ctx, "SELECT count(*), sum(id) FROM t").Scan(&n, &sum); err != nil || n != 100000 || sum != 100000*100001/2 {
		t.Fatalf("the recreated lazy compute reads %d rows summing to %d (%v), want 100000 summing to %d", n, sum, err, int64(100000*100001/2))
	}
	pg.Stop()
	if m := mountsIn(env.Dir); len(m) > 0 {
		t.Fatalf("pg stop left %v mounted", m)
	}
}

// checkNodeToken checks that token is valid for the repository's key and
// scoped to tenant alone.
func checkNodeToken(t *testing.T, env *zenithtest.Env, token, tenant string) {
	t.Helper()
	v, err := auth.LoadVerifier(filepath.Join(env.RepoDir, auth.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(token)
	if err != nil {
		t.Fatalf("the node's token: %v", err)
	}
	if c.Scope != auth.ScopeTenant || c.TenantID == nil || c.TenantID.String() != tenant {
		t.Errorf("the node's token has scope %q for tenant %v, want %q for %s", c.Scope, c.TenantID, auth.ScopeTenant, tenant)
	}
}

// checkNodeHoldsNoSecret reads every file of a node's directory (its
// mount excepted: the backing directory under lazy/ holds the same
// files) and the FUSE server's command line: none holds the repository's
// private keys, and every token in them is a token of tenant.
func checkNodeHoldsNoSecret(t *testing.T, env *zenithtest.Env, nodeDir, tenant string) {
	t.Helper()
	var secrets [][]byte
	for _, p := range []string{filepath.Join(env.RepoDir, auth.PrivateKeyFile), filepath.Join(env.RepoDir, "tls", auth.CAKeyFile), filepath.Join(env.RepoDir, "tls", auth.ServerKeyFile)} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, pemBody(b))
	}
	tokens := 0
	check := func(what string, b []byte) {
		if privatePEM.Match(b) {
			t.Errorf("%s holds a private key", what)
		}
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("%s holds a private key of the repository", what)
			}
		}
		for _, tok := range jwtPattern.FindAll(b, -1) {
			tokens++
			checkNodeToken(t, env, string(tok), tenant)
		}
	}
	err := filepath.WalkDir(nodeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == filepath.Join(nodeDir, "pgdata") {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		check(p, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tokens != 1 {
		t.Errorf("the node's directory holds %d tokens, want 1 (its token file)", tokens)
	}
	b, err := os.ReadFile(filepath.Join(nodeDir, "fuse.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("fuse.pid: %q", b)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if jwtPattern.Match(cmdline) || !bytes.Contains(cmdline, []byte("--token-file")) {
		t.Errorf("the FUSE server's command line has a token, or no --token-file: %q", cmdline)
	}
}

// pemBody is the base64 body of a PEM file (its first line with text
// after the BEGIN line), which a copy would hold whatever its header.
func pemBody(b []byte) []byte {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) < 2 || len(lines[1]) == 0 {
		return b
	}
	return lines[1]
}

// checkLoopbackHBA checks the rules the compute loaded from its
// pg_hba.conf: the socket and loopback addresses only.
func checkLoopbackHBA(ctx context.Context, t *testing.T, pg *zenithtest.Postgres) {
	t.Helper()
	rows, err := pg.Connect().Query(ctx, "SELECT line_number, type, coalesce(address, ''), coalesce(netmask, ''), coalesce(error, '') FROM pg_hba_file_rules")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var line int
		var typ, addr, mask, ruleErr string
		if err := rows.Scan(&line, &typ, &addr, &mask, &ruleErr); err != nil {
			t.Fatal(err)
		}
		n++
		switch {
		case ruleErr != "":
			t.Errorf("pg_hba.conf line %d: %s", line, ruleErr)
		case typ == "local":
		case typ == "host" && (addr == "127.0.0.1" && mask == "255.255.255.255" || addr == "::1" && mask == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
		default:
			t.Errorf("pg_hba.conf line %d lets in %s %s/%s: want the socket and loopback only", line, typ, addr, mask)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("pg_hba_file_rules is empty")
	}
}

// checkNodeTokenReach fetches a page of the node's timeline with the
// node's token and client settings, as its FUSE server does, then tries
// the same token on another tenant's pages and on admin commands: each
// refused with SQLSTATE 28000. It returns the other tenant and the
// timeline of its main branch.
func checkNodeTokenReach(ctx context.Context, t *testing.T, env *zenithtest.Env, tenant, lazyDir, tokenPath, token string) (other, otherTimeline string) {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(lazyDir, "manifest"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := api.ParseLazyManifest(text)
	if err != nil {
		t.Fatal(err)
	}
	var file *api.LazyFile
	for i, f := range m.Files {
		if f.SegNo == 0 && f.Size >= pgdata.BlockSize {
			file = &m.Files[i]
			break
		}
	}
	if file == nil {
		t.Fatal("the lazy manifest lists no relation with a block")
	}
	env.Zenith("tenant", "create")
	var tenants []struct {
		ID       string `json:"id"`
		Branches []struct {
			Name     string `json:"name"`
			Timeline string `json:"timeline_id"`
		} `json:"branches"`
	}
	if err := json.Unmarshal([]byte(env.Zenith("tenant", "list", "--json")), &tenants); err != nil {
		t.Fatal(err)
	}
	mainOf := map[string]string{}
	for _, tn := range tenants {
		for _, b := range tn.Branches {
			if b.Name == "main" {
				mainOf[tn.ID] = b.Timeline
			}
		}
		if tn.ID != tenant {
			other = tn.ID
		}
	}
	if other == "" || mainOf[other] == "" || mainOf[tenant] == "" {
		t.Fatalf("tenant list: %+v", tenants)
	}

	client := func(tenant, timeline string) *lazyfs.PageClient {
		tid, err := id.ParseTenantID(tenant)
		if err != nil {
			t.Fatal(err)
		}
		c, err := lazyfs.NewPageClient(lazyfs.PageClientOptions{Addr: env.PageserverAddr, Stream: api.PageStream{Tenant: tid, Timeline: timeline},
			Timeout: time.Minute, CAFile: env.CAFile(), TokenFile: tokenPath})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pages, err := client(tenant, mainOf[tenant]).GetPages(ctx, m.LSN, file.Rel, file.Fork, []pgdata.BlockNumber{0})
	if err != nil || len(pages) != 1 || len(pages[0]) != pgdata.BlockSize {
		t.Fatalf("the node's token on its own timeline: %d pages, %v; want one page", len(pages), err)
	}
	err = client(other, mainOf[other]).Check(ctx)
	if got := sqlstate(err); got != "28000" {
		t.Errorf("the node's token on another tenant's pagestream: %v (SQLSTATE %q), want SQLSTATE 28000", err, got)
	}
	_, err = client(other, mainOf[other]).GetPages(ctx, m.LSN, file.Rel, file.Fork, []pgdata.BlockNumber{0})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" {
		t.Errorf("the node's token reading another tenant's page: %v, want SQLSTATE 28000", err)
	}

	// The same token over libpq, as a user would try it.
	for _, cmd := range []string{
		"branch_list " + other,
		"basebackup " + other + " main",
		"tenant_list",
		"tenant_create",
		"callmemaybe " + tenant + " main host=127.0.0.1 port=1",
	} {
		if err := pageserviceExec(env.PageserverConnString(token), cmd); sqlstate(err) != "28000" {
			t.Errorf("%s with the node's token: %v, want SQLSTATE 28000", cmd, err)
		}
	}
	return other, mainOf[other]
}
