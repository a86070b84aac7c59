package auth

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestLocalCA checks that a client trusting the local CA completes a
// handshake with a server of its certificate for the right host, and
// refuses the same certificate under another name.
func TestLocalCA(t *testing.T) {
	dir := t.TempDir()
	if err := WriteLocalCA(dir, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv, err := ServerTLS(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.WriteString(c, "ok"); c.Close() }()
		}
	}()
	for _, tt := range []struct {
		serverName string
		wantErr    string
	}{
		{"127.0.0.1", ""},
		{"localhost", ""},
		{"example.com", "certificate is valid for"},
	} {
		cli, err := ClientTLS(filepath.Join(dir, CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		cli.ServerName = tt.serverName
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cli)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.serverName, err)
				continue
			}
			c.Close()
		} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: got %v, want an error saying %q", tt.serverName, err, tt.wantErr)
		}
	}
	if err := WriteLocalCA(dir, []string{"127.0.0.1"}, time.Hour); err == nil {
		t.Error("WriteLocalCA over an existing CA: got nil, want an error")
	}
}

// TestConnParams checks that libpq parses ConnParams back to the same
// token and CA, whatever quotes, backslashes and spaces they hold.
func TestConnParams(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `my 'ca\dir`)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteLocalCA(dir, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, o := range []ClientOptions{
		{},
		{Token: `a'b\c d`},
		{Token: "t.o.k", CAFile: filepath.Join(dir, CACertFile)},
	} {
		cfg, err := pgconn.ParseConfig("host=127.0.0.1 port=1 " + o.ConnParams())
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if cfg.Password != o.Token {
			t.Errorf("%+v: password %q, want %q", o, cfg.Password, o.Token)
		}
		if (cfg.TLSConfig != nil) != (o.CAFile != "") {
			t.Errorf("%+v: TLS %v, want it exactly when there is a CA", o, cfg.TLSConfig != nil)
		}
		if cfg.TLSConfig != nil && (cfg.TLSConfig.RootCAs == nil || cfg.TLSConfig.InsecureSkipVerify && cfg.TLSConfig.VerifyPeerCertificate == nil) {
			t.Errorf("%+v: the server's certificate is not verified", o)
		}
	}
}
