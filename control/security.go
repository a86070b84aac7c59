package control

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/zenithdb/zenith/repo/auth"
)

// SecurityConfig says whether the services check tokens and speak TLS
// (zenith init --auth, --tls). The keys and certificates are files of the
// repository (see the paths below).
type SecurityConfig struct {
	Auth bool `toml:"auth" comment:"true: every service takes only ed25519-signed tokens (auth_public_key.pem checks them; zenith token prints one). health and metrics stay public."`
	TLS  bool `toml:"tls" comment:"true: every service speaks TLS with tls/server.crt, which tls/ca.crt signed; zenith's clients verify it."`
}

// AuthTokenEnv is the environment variable through which a daemon gets the
// token it presents to the other services (the page server to the
// safekeepers, a safekeeper to its peers).
const AuthTokenEnv = "ZENITH_AUTH_TOKEN"

// serviceTokenTTL is how long the tokens zenith start gives the daemons
// last: they run for long, and are restarted by zenith start.
const serviceTokenTTL = 365 * 24 * time.Hour

// cliTokenTTL is how long the token of one zenith command lasts.
const cliTokenTTL = time.Hour

// nodeTokenTTL is how long a compute node's token lasts. It is minted
// at every start of the node and removed when it stops, so it must only
// outlast one run, as the daemons' tokens outlast theirs; a node that
// runs longer gets a new one by a restart. (Its FUSE server reads the
// file for every new connection: a token replaced in place is used at
// once.)
const nodeTokenTTL = serviceTokenTTL

// nodeTokenFile is the file, in a compute node's directory, of the token
// its FUSE server presents to the page service (mode 0600).
const nodeTokenFile = "page_service_token"

// tlsDirName holds the local CA and the services' certificate.
const tlsDirName = "tls"

// PrivateKeyPath is the repository's token signing key (mode 0600).
func (e *Env) PrivateKeyPath() string { return filepath.Join(e.Dir, auth.PrivateKeyFile) }

// PublicKeyPath is the key the services check tokens with.
func (e *Env) PublicKeyPath() string { return filepath.Join(e.Dir, auth.PublicKeyFile) }

// ServiceTokenFile is the environment file of the systemd units with
// auth on: the token the services present to each other (0600).
func (e *Env) ServiceTokenFile() string { return filepath.Join(e.Dir, "service_token.env") }

// TLSPath is a file of the local CA directory (auth.CACertFile...).
func (e *Env) TLSPath(name string) string { return filepath.Join(e.Dir, tlsDirName, name) }

// tokenPath is the node's token file (nodeTokenFile).
func (n *Node) tokenPath() string { return filepath.Join(n.dir, nodeTokenFile) }

// writeNodeToken mints a token of the node's tenant only, never an admin
// one, and writes it to the node's token file, mode 0600, replacing the
// old one at once (a new connection reads either whole).
func (e *Env) writeNodeToken(n *Node) error {
	tok, err := e.issueToken(auth.TenantClaims(n.Tenant), nodeTokenTTL)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(n.dir, nodeTokenFile+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("write the node's token: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), n.tokenPath())
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write the node's token: %w", err)
	}
	return nil
}

// removeNodeToken removes the node's token file: a stopped node holds no
// token.
func removeNodeToken(n *Node) error {
	if err := os.Remove(n.tokenPath()); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove the node's token: %w", err)
	}
	return nil
}

// lazyClientArgs are the flags of zenith pg fuse that make the node's
// page client speak TLS and present the node's token, as the repository
// has them.
func (e *Env) lazyClientArgs(n *Node) []string {
	var args []string
	if e.Config.Security.TLS {
		args = append(args, "--ca-file", e.TLSPath(auth.CACertFile))
	}
	if e.Config.Security.Auth {
		args = append(args, "--token-file", n.tokenPath())
	}
	return args
}

// initSecurity makes the key pair (with auth) and the local CA and the
// services' certificate for every host of the config (with TLS).
func initSecurity(e *Env) error {
	if e.Config.Security.Auth {
		if err := auth.WriteKeyPair(e.PrivateKeyPath(), e.PublicKeyPath()); err != nil {
			return fmt.Errorf("make the token key pair: %w", err)
		}
	}
	if e.Config.Security.TLS {
		if err := os.MkdirAll(filepath.Join(e.Dir, tlsDirName), 0o755); err != nil {
			return err
		}
		if err := auth.WriteLocalCA(filepath.Join(e.Dir, tlsDirName), e.serviceHosts(), 10*365*24*time.Hour); err != nil {
			return fmt.Errorf("make the local CA: %w", err)
		}
	}
	return nil
}

// serviceHosts are the hosts the services' certificate names: loopback
// and the hosts of every configured address.
func (e *Env) serviceHosts() []string {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	seen := map[string]bool{}
	for _, h := range hosts {
		seen[h] = true
	}
	addrs := []string{e.Config.Pageserver.ListenPG, e.Config.Pageserver.ListenHTTP}
	for _, sk := range e.Config.SafekeeperList() {
		addrs = append(addrs, sk.ListenPG, sk.ListenHTTP)
	}
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil && !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// issueToken signs a token with the repository's private key.
func (e *Env) issueToken(c auth.Claims, ttl time.Duration) (string, error) {
	if !e.Config.Security.Auth {
		return "", fmt.Errorf("this repository has no token auth (zenith init --auth makes one that has)")
	}
	key, err := auth.LoadPrivateKey(e.PrivateKeyPath())
	if err != nil {
		return "", err
	}
	return auth.Issue(key, c, ttl, time.Now())
}

// clientOptions are what zenith's commands present to the services: a
// fresh admin token and the local CA, as the repository has them.
func (e *Env) clientOptions() (auth.ClientOptions, error) {
	return e.optionsWith(cliTokenTTL)
}

// serviceClientOptions are what a daemon presents to the other services.
func (e *Env) serviceClientOptions() (auth.ClientOptions, error) {
	return e.optionsWith(serviceTokenTTL)
}

func (e *Env) optionsWith(ttl time.Duration) (auth.ClientOptions, error) {
	var o auth.ClientOptions
	if e.Config.Security.Auth {
		tok, err := e.issueToken(auth.AdminClaims(), ttl)
		if err != nil {
			return o, err
		}
		o.Token = tok
	}
	if e.Config.Security.TLS {
		o.CAFile = e.TLSPath(auth.CACertFile)
	}
	return o, nil
}

// daemonEnv is the environment a daemon gets: its token, if auth is on.
func (e *Env) daemonEnv() ([]string, error) {
	o, err := e.serviceClientOptions()
	if err != nil || o.Token == "" {
		return nil, err
	}
	return []string{AuthTokenEnv + "=" + o.Token}, nil
}

// httpClient is the HTTP client of zenith's commands, and the URL
// scheme: https checked against the local CA when TLS is on.
func (e *Env) httpClient(timeout time.Duration) (*http.Client, string, error) {
	if !e.Config.Security.TLS {
		return &http.Client{Timeout: timeout}, "http://", nil
	}
	tc, err := auth.ClientTLS(e.TLSPath(auth.CACertFile))
	if err != nil {
		return nil, "", err
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc}}, "https://", nil
}

// pageserverSecurity are the pageserver.toml settings of token auth and
// TLS, as the repository has them.
func (e *Env) pageserverSecurity() map[string]string {
	m := map[string]string{}
	if e.Config.Security.Auth {
		m["auth_public_key"] = e.PublicKeyPath()
	}
	if e.Config.Security.TLS {
		m["tls_cert"] = e.TLSPath(auth.ServerCertFile)
		m["tls_key"] = e.TLSPath(auth.ServerKeyFile)
		m["tls_ca"] = e.TLSPath(auth.CACertFile)
	}
	return m
}

// curlAuthHint is what a curl command printed for the user adds to reach
// a service of this repository: the CA and an admin token when they are
// on, nothing otherwise.
func (e *Env) curlAuthHint() string {
	var h string
	if e.Config.Security.TLS {
		h += " --cacert " + e.TLSPath(auth.CACertFile)
	}
	if e.Config.Security.Auth {
		h += ` -H "Authorization: Bearer $(zenith token --admin)"`
	}
	return h
}
