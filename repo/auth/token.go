package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/zenithdb/zenith/repo/id"
)

// Scope is what a token may reach.
type Scope string

const (
	// ScopeTenant reaches the data of one tenant (Claims.TenantID).
	ScopeTenant Scope = "tenant"
	// ScopeAdmin reaches every tenant and the management commands:
	// tenant creation, WAL sources, safekeeper control.
	ScopeAdmin Scope = "admin"
)

// Errors of Verify and Allow. A service answers the first four with
// "authentication failed" (28P01, 401) and ErrForbidden with "not
// authorized" (28000, 403).
var (
	ErrNoToken      = errors.New("no token given")
	ErrMalformed    = errors.New("malformed token")
	ErrBadSignature = errors.New("token signature is not valid for this server's key")
	ErrExpired      = errors.New("token has expired")
	ErrForbidden    = errors.New("token's scope does not allow this")
)

// Claims are a token's claims: the registered ones (expiry, issue time)
// and the scope.
type Claims struct {
	Scope Scope `json:"scope"`
	// TenantID is the tenant of a ScopeTenant token, absent otherwise.
	TenantID *id.TenantID `json:"tenant_id,omitempty"`
	jwt.RegisteredClaims
}

// TenantClaims are the claims of a token for tenant t.
func TenantClaims(t id.TenantID) Claims { return Claims{Scope: ScopeTenant, TenantID: &t} }

// AdminClaims are the claims of an admin token.
func AdminClaims() Claims { return Claims{Scope: ScopeAdmin} }

// validate checks the scope's shape: a tenant token names one tenant, an
// admin token none.
func (c *Claims) validate() error {
	switch c.Scope {
	case ScopeTenant:
		if c.TenantID == nil || c.TenantID.IsZero() {
			return errors.New("tenant scope without a tenant_id")
		}
	case ScopeAdmin:
		if c.TenantID != nil {
			return errors.New("admin scope with a tenant_id")
		}
	case "":
		return errors.New("no scope")
	default:
		return fmt.Errorf("unknown scope %q", truncate(string(c.Scope), 32))
	}
	return nil
}

// Issue signs c with key; ttl > 0 sets its expiry, 0 makes a token that
// never expires.
func Issue(key ed25519.PrivateKey, c Claims, ttl time.Duration, now time.Time) (string, error) {
	if err := c.validate(); err != nil {
		return "", err
	}
	c.IssuedAt = jwt.NewNumericDate(now)
	if ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodEdDSA, &c).SignedString(key)
}

// Verifier checks tokens against a public key.
type Verifier struct {
	key    ed25519.PublicKey
	parser *jwt.Parser
}

// NewVerifier returns a verifier of tokens signed by key's private half.
func NewVerifier(key ed25519.PublicKey) *Verifier {
	return &Verifier{key: key, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(5*time.Second),
	)}
}

// maxTokenLen bounds a token: a real one is a few hundred bytes.
const maxTokenLen = 4096

// Verify parses and checks a token: its algorithm (EdDSA only), its
// signature, its expiry and its scope. Errors wrap ErrNoToken,
// ErrMalformed, ErrBadSignature or ErrExpired.
func (v *Verifier) Verify(token string) (*Claims, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > maxTokenLen {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(token), maxTokenLen)
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil })
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			// The algorithm is not EdDSA (HS256 keyed with the public
			// key, "none"): say so rather than blame the key.
			return nil, fmt.Errorf("%w: only EdDSA tokens are accepted (%v)", ErrBadSignature, err)
		}
		return nil, ErrBadSignature
	default:
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &c, nil
}

// Need is what a command or route asks of a token.
type Need int

const (
	// Public needs no token: health checks and metrics.
	Public Need = iota + 1
	// AnyToken needs a valid token of any scope.
	AnyToken
	// Tenant needs a token for the tenant the request names (or admin).
	Tenant
	// Admin needs an admin token.
	Admin
)

func (n Need) String() string {
	switch n {
	case Public:
		return "public"
	case AnyToken:
		return "any token"
	case Tenant:
		return "tenant"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Need(%d)", int(n))
}

// Allow reports whether c meets need for a request about tenant (zero
// when it names none); the error wraps ErrForbidden and says why.
func (c *Claims) Allow(need Need, tenant id.TenantID) error {
	switch {
	case need == Public || need == AnyToken || c.Scope == ScopeAdmin:
		return nil
	case need == Admin:
		return fmt.Errorf("%w: it needs an admin token, this one is for tenant %s", ErrForbidden, c.TenantID)
	case need == Tenant && tenant.IsZero():
		return fmt.Errorf("%w: the request names no tenant", ErrForbidden)
	case need == Tenant && *c.TenantID != tenant:
		return fmt.Errorf("%w: the token is for tenant %s, not %s", ErrForbidden, c.TenantID, tenant)
	case need == Tenant:
		return nil
	}
	return fmt.Errorf("%w: unknown need %v", ErrForbidden, need)
}

// truncate shortens outside input quoted in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
