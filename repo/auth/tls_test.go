package auth

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
