package auth

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/id"
)

// TestMux checks each Need of a route against each kind of token, and
// that a token over plaintext from another host is refused.
func TestMux(t *testing.T) {
	pub, priv := newKey(t)
	a, b := id.NewTenantID(), id.NewTenantID()
	tok := func(c Claims) string {
		s, err := Issue(priv, c, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	admin, forA := tok(AdminClaims()), tok(TenantClaims(a))
	m := NewMux(NewVerifier(pub))
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }
	m.HandleFunc("GET /public", Public, ok)
	m.HandleFunc("GET /any", AnyToken, ok)
	m.HandleFunc("GET /t/{tenant}", Tenant, ok)
	m.HandleFunc("GET /admin", Admin, ok)
	tests := []struct {
		path, token, remote string
		tls                 bool
		want                int
	}{
		{"/public", "", "127.0.0.1:1", false, http.StatusTeapot},
		{"/any", "", "127.0.0.1:1", false, http.StatusUnauthorized},
		{"/any", forA, "127.0.0.1:1", false, http.StatusTeapot},
		{"/t/" + a.String(), forA, "[::1]:1", false, http.StatusTeapot},
		{"/t/" + b.String(), forA, "127.0.0.1:1", false, http.StatusForbidden},
		{"/t/not-a-tenant", forA, "127.0.0.1:1", false, http.StatusForbidden},
		{"/t/" + b.String(), admin, "127.0.0.1:1", false, http.StatusTeapot},
		{"/admin", forA, "127.0.0.1:1", false, http.StatusForbidden},
		{"/admin", admin, "127.0.0.1:1", false, http.StatusTeapot},
		{"/admin", "x.y.z", "127.0.0.1:1", false, http.StatusUnauthorized},
		// A token over plaintext from another host is refused; over TLS
		// it is taken.
		{"/admin", admin, "192.0.2.7:1", false, http.StatusForbidden},
		{"/admin", admin, "192.0.2.7:1", true, http.StatusTeapot},
		{"/public", "", "192.0.2.7:1", false, http.StatusTeapot},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, tt.path, nil)
		r.RemoteAddr = tt.remote
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		SetBearer(r, tt.token)
		w := httptest.NewRecorder()
		m.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("GET %s from %s (TLS %v) with token %.8q: got %d, want %d: %s", tt.path, tt.remote, tt.tls, tt.token, w.Code, tt.want, w.Body)
		}
	}
	if got := len(m.Routes()); got != 4 {
		t.Errorf("Routes: got %d, want 4", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("a route without a need: registered, want a panic")
		}
	}()
	m.HandleFunc("GET /nothing", 0, ok)
}

// TestMuxOff: without a verifier every route is open.
func TestMuxOff(t *testing.T) {
	m := NewMux(nil)
	m.HandleFunc("GET /admin", Admin, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/admin", nil))
	if w.Code != http.StatusTeapot {
		t.Errorf("auth off: got %d, want the handler's 418", w.Code)
	}
}
