package pgwire

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// wire returns the bytes that run writes through a CopyBoth on a real
// connection (one end of a net.Pipe), until run returns.
func wire(t *testing.T, run func(c *CopyBoth) error) []byte {
	t.Helper()
	client, server := net.Pipe()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	err := run(&CopyBoth{s: &Session{conn: server}})
	server.Close()
	if err != nil {
		t.Fatal(err)
	}
	return <-got
}

// TestSendFramed: a message sent in place goes out byte for byte as Send
// frames it, after what was queued before it, and a message with no room
// for its framing or on a finished stream is refused.
func TestSendFramed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		queued  []string
		payload string
	}{
		{"alone", nil, "w-some-wal"},
		{"after queued messages", []string{"a", "bc"}, "w-more-wal"},
		{"empty payload", []string{"x"}, ""},
		{"large payload", nil, strings.Repeat("wal", 50000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			queue := func(c *CopyBoth) error {
				for _, q := range tc.queued {
					if err := c.Queue([]byte(q)); err != nil {
						return err
					}
				}
				return nil
			}
			want := wire(t, func(c *CopyBoth) error {
				if err := queue(c); err != nil {
					return err
				}
				return c.Send([]byte(tc.payload))
			})
			got := wire(t, func(c *CopyBoth) error {
				if err := queue(c); err != nil {
					return err
				}
				msg := append(make([]byte, CopyDataHeader), tc.payload...)
				if err := c.SendFramed(msg); err != nil {
					return err
				}
				if len(c.buf) != 0 {
					t.Errorf("%d bytes still queued after SendFramed", len(c.buf))
				}
				return nil
			})
			if !bytes.Equal(got, want) {
				t.Errorf("SendFramed wrote %d bytes %.40q..., Send %d bytes %.40q...", len(got), got, len(want), want)
			}
		})
	}
	wire(t, func(c *CopyBoth) error {
		if err := c.SendFramed(make([]byte, CopyDataHeader-1)); err == nil {
			t.Error("SendFramed of a message shorter than its framing: no error")
		}
		if err := c.Close(); err != nil {
			return err
		}
		if err := c.SendFramed(make([]byte, CopyDataHeader+1)); err == nil {
			t.Error("SendFramed on a finished stream: no error")
		}
		return nil
	})
}
