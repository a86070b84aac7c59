// Package authtest is what the tests of a service with auth and TLS on
// share: a key pair and a local CA in a temporary directory, tokens signed
// with that key, the SQLSTATE of a refusal, and a walk over an auth.Mux's
// routes with a token. The page server's and the safekeepers' auth tests
// both use it, so their set-up is written once.
//
// What it must never do: be imported by anything but tests.
package authtest

import (
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/repo/auth"
)

// Keys are a token key pair and a local CA, written by New into a
// temporary directory under the file names a service's config expects.
type Keys struct {
	// Dir holds the files.
	Dir string
	// PublicKey is the file of the public key, a service's
	// auth_public_key.
	PublicKey string
	// Private signs tokens.
	Private ed25519.PrivateKey
	// CA is the local CA's certificate, what a client trusts.
	CA string
	// ServerCert and ServerKey are the certificate, signed by the CA for
	// hosts, and its key: a service's tls_cert and tls_key.
	ServerCert, ServerKey string
}

// New writes a key pair and a local CA whose server certificate names
// hosts, valid for an hour.
func New(t testing.TB, hosts ...string) *Keys {
	t.Helper()
	dir := t.TempDir()
	k := &Keys{
		Dir: dir, PublicKey: filepath.Join(dir, auth.PublicKeyFile), CA: filepath.Join(dir, auth.CACertFile),
		ServerCert: filepath.Join(dir, auth.ServerCertFile), ServerKey: filepath.Join(dir, auth.ServerKeyFile),
	}
	priv := filepath.Join(dir, auth.PrivateKeyFile)
	if err := auth.WriteKeyPair(priv, k.PublicKey); err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteLocalCA(dir, hosts, time.Hour); err != nil {
		t.Fatal(err)
	}
	var err error
	if k.Private, err = auth.LoadPrivateKey(priv); err != nil {
		t.Fatal(err)
	}
	return k
}

// Token issues a token for c, valid for ttl from now.
func (k *Keys) Token(t testing.TB, c auth.Claims, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Issue(k.Private, c, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Client is what a client presents: token, and the CA it trusts.
func (k *Keys) Client(token string) auth.ClientOptions {
	return auth.ClientOptions{Token: token, CAFile: k.CA}
}

// HTTPClient is an HTTPS client that trusts the CA.
func (k *Keys) HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	tc, err := auth.ClientTLS(k.CA)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// Status sends a request with token (none when empty) and returns the
// status of the answer.
func Status(t testing.TB, client *http.Client, method, url, token string, body io.Reader) int {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	auth.SetBearer(req, token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// SQLState is the SQLSTATE of a server's error, "" for any other error.
func SQLState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
