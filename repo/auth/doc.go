// Package auth is Zenith's token authentication: ed25519-signed JWTs
// (EdDSA, github.com/golang-jwt/jwt/v5) whose claims carry a scope, either
// one tenant or admin (management of every tenant), as Neon's tenant and
// pageserverapi scopes. The control plane holds the private key and issues
// tokens; every service holds only the public key and verifies them.
//
// A service declares, for each of its commands and routes, the Need it has
// of a token (Public, AnyToken, Tenant, Admin) and asks Claims.Allow
// whether a verified token meets it. Failures are sentinel errors a
// service maps to its protocol: ErrNoToken, ErrMalformed, ErrBadSignature
// and ErrExpired to "who are you?" (SQLSTATE 28P01, HTTP 401), ErrForbidden
// to "not you" (SQLSTATE 28000, HTTP 403).
//
// The package also builds the TLS configurations of the servers and of
// zenith's own clients from PEM files, and makes a local CA for a laptop
// setup.
//
// It knows nothing of the services or their commands. It must never log
// or return a token, nor accept one whose signature, algorithm or expiry
// it did not check.
package auth
