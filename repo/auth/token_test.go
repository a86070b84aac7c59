package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/zenithdb/zenith/repo/id"
)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestVerify(t *testing.T) {
	pub, priv := newKey(t)
	_, other := newKey(t)
	now := time.Now()
	tenantA := id.NewTenantID()
	issue := func(k ed25519.PrivateKey, c Claims, ttl time.Duration, at time.Time) string {
		tok, err := Issue(k, c, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// A token signed with HS256 using the public key as the secret: the
	// classic algorithm-confusion attack.
	hs, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &Claims{Scope: ScopeAdmin}).SignedString([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, &Claims{Scope: ScopeAdmin}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	good := issue(priv, TenantClaims(tenantA), time.Hour, now)
	parts := strings.Split(good, ".")
	adminPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"scope":"admin"}`))
	noScope, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"x": 1}).SignedString(priv)
	tests := []struct {
		name    string
		token   string
		want    error
		wantErr string
	}{
		{"admin", issue(priv, AdminClaims(), 0, now), nil, ""},
		{"tenant", good, nil, ""},
		{"empty", "", ErrNoToken, ""},
		{"spaces", "   ", ErrNoToken, ""},
		{"expired", issue(priv, AdminClaims(), time.Minute, now.Add(-time.Hour)), ErrExpired, ""},
		{"other key", issue(other, AdminClaims(), time.Hour, now), ErrBadSignature, ""},
		{"payload swapped", parts[0] + "." + adminPayload + "." + parts[2], ErrBadSignature, ""},
		{"garbage", "not a token", ErrMalformed, ""},
		{"HS256 with the public key", hs, ErrBadSignature, "signing method HS256 is invalid"},
		{"alg none", none, ErrBadSignature, "signing method none is invalid"},
		{"no scope", noScope, ErrMalformed, "no scope"},
		{"too long", strings.Repeat("a", 5000), ErrMalformed, "more than"},
	}
	v := NewVerifier(pub)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(tt.token)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Verify: got %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Verify: got %q, want it to say %q", err, tt.wantErr)
			}
			if err == nil && c.Scope == "" {
				t.Errorf("Verify: claims without a scope")
			}
		})
	}
}

func TestIssueRefusesBadScope(t *testing.T) {
	_, priv := newKey(t)
	tid := id.NewTenantID()
	for _, c := range []Claims{{}, {Scope: ScopeTenant}, {Scope: ScopeAdmin, TenantID: &tid}, {Scope: "root"}} {
		if _, err := Issue(priv, c, 0, time.Now()); err == nil {
			t.Errorf("Issue(%+v): got a token, want an error", c)
		}
	}
}

func TestAllow(t *testing.T) {
	a, b := id.NewTenantID(), id.NewTenantID()
	admin, forA := AdminClaims(), TenantClaims(a)
	tests := []struct {
		claims Claims
		need   Need
		tenant id.TenantID
		ok     bool
	}{
		{admin, Admin, id.TenantID{}, true},
		{admin, Tenant, a, true},
		{admin, AnyToken, id.TenantID{}, true},
		{forA, Tenant, a, true},
		{forA, Tenant, b, false},
		{forA, Tenant, id.TenantID{}, false},
		{forA, Admin, id.TenantID{}, false},
		{forA, AnyToken, id.TenantID{}, true},
		{forA, Public, b, true},
	}
	for _, tt := range tests {
		err := tt.claims.Allow(tt.need, tt.tenant)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("%s token, need %v, tenant %s: got %v, want ok=%v", tt.claims.Scope, tt.need, tt.tenant, err, tt.ok)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	privPath, pubPath := filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	if err := WriteKeyPair(privPath, pubPath); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyPair(privPath, pubPath); err == nil {
		t.Fatal("WriteKeyPair over an existing pair: got nil, want an error")
	}
	priv, err := LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Issue(priv, AdminClaims(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("a token of the written private key: %v", err)
	}
	if _, err := LoadPublicKey(privPath); err == nil {
		t.Error("LoadPublicKey of the private key file: got nil, want an error")
	}
	if st, err := os.Stat(privPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if err := os.Chmod(privPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(privPath); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a private key others may read: got %v, want a refusal saying chmod 600", err)
	}
}

// FuzzVerify feeds the token parser arbitrary input: it must never panic
// and never accept a token it did not sign.
func FuzzVerify(f *testing.F) {
	pub, priv := newKey(f)
	good, err := Issue(priv, TenantClaims(id.NewTenantID()), time.Hour, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	v := NewVerifier(pub)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImFkbWluIn0.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err == nil && tok != good && strings.TrimSpace(tok) != good {
			// Only a token signed by priv verifies; the fuzzer cannot
			// forge an ed25519 signature.
			t.Fatalf("Verify(%q) accepted a token it did not sign: %+v", tok, c)
		}
	})
}
