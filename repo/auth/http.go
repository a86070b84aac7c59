package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/zenithdb/zenith/repo/id"
)

// Route is one HTTP route of a service and what it needs of a token.
type Route struct {
	// Pattern is the net/http ServeMux pattern, "METHOD /path/{tenant}".
	Pattern string
	Need    Need
}

// Mux is an http.ServeMux on which every route declares its Need. With a
// Verifier, each request's "Authorization: Bearer" token is checked
// against its route's need (the tenant is the {tenant} path value) before
// the handler runs; without one, every request passes.
type Mux struct {
	mux    *http.ServeMux
	v      *Verifier
	routes []Route
}

// NewMux returns a Mux checking tokens with v (nil: auth off).
func NewMux(v *Verifier) *Mux { return &Mux{mux: http.NewServeMux(), v: v} }

// Handle registers h for pattern, reachable with need.
func (m *Mux) Handle(pattern string, need Need, h http.Handler) {
	if need < Public || need > Admin {
		panic(fmt.Sprintf("auth: route %q declares no need", pattern))
	}
	m.routes = append(m.routes, Route{pattern, need})
	m.mux.Handle(pattern, m.check(need, h))
}

// HandleFunc registers f for pattern, reachable with need.
func (m *Mux) HandleFunc(pattern string, need Need, f http.HandlerFunc) {
	m.Handle(pattern, need, f)
}

// Routes are the registered routes, in registration order.
func (m *Mux) Routes() []Route { return append([]Route(nil), m.routes...) }

// ServeHTTP serves a request with the route that matches it.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

func (m *Mux) check(need Need, h http.Handler) http.Handler {
	if m.v == nil || need == Public {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.authorize(r, need); err != nil {
			status, code := http.StatusUnauthorized, "28P01"
			if errors.Is(err, ErrForbidden) {
				status, code = http.StatusForbidden, "28000"
			}
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="zenith"`)
			}
			WriteJSON(w, status, map[string]string{"error": err.Error(), "code": code})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (m *Mux) authorize(r *http.Request, need Need) error {
	if r.TLS == nil && !IsLoopback(r.RemoteAddr) {
		return fmt.Errorf("%w: a token is accepted only over TLS or from loopback", ErrForbidden)
	}
	tok, err := BearerToken(r)
	if err != nil {
		return err
	}
	c, err := m.v.Verify(tok)
	if err != nil {
		return err
	}
	var tenant id.TenantID
	if need == Tenant {
		if tenant, err = id.ParseTenantID(r.PathValue("tenant")); err != nil && c.Scope != ScopeAdmin {
			return fmt.Errorf("%w: the request names no valid tenant", ErrForbidden)
		}
	}
	return c.Allow(need, tenant)
}

// WriteJSON answers a request with status and v as indented JSON: the
// answers of both services' HTTP APIs, and the Mux's own refusals.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// BearerToken is the token of a request's "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", fmt.Errorf("%w: send it as Authorization: Bearer <token>", ErrNoToken)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization header is not \"Bearer <token>\"", ErrMalformed)
	}
	return tok, nil
}

// SetBearer makes req present token (none when empty).
func SetBearer(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// IsLoopback reports whether a host:port (or a host) is a loopback
// address; a name is loopback only if it is "localhost".
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ClientOptions are what zenith's own clients present to a service: a
// token (empty: none) and the CA that signed the services' certificates
// (empty: no TLS).
type ClientOptions struct {
	Token  string
	CAFile string
}

// ConnParams are the libpq connection-string parameters of o: sslmode
// (verify-full against the CA, or disable) and the token as password.
// Tokens and paths with a quote or a backslash are escaped.
func (o ClientOptions) ConnParams() string {
	p := "sslmode=disable"
	if o.CAFile != "" {
		p = "sslmode=verify-full sslrootcert=" + quoteConnValue(o.CAFile)
	}
	if o.Token != "" {
		p += " password=" + quoteConnValue(o.Token)
	}
	return p
}

// quoteConnValue quotes a libpq keyword/value connection-string value.
func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
