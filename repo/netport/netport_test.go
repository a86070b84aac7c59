package netport

import (
	"net"
	"strconv"
	"testing"
)

// TestPick: ports are free, outside the ephemeral range, consecutive when
// asked, and never the same twice.
func TestPick(t *testing.T) {
	elo, ehi, err := ephemeralRange()
	if err != nil {
		t.Skipf("no ephemeral range to compare with: %v", err)
	}
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		n := 1 + i%3
		base, err := Pick("127.0.0.1", n)
		if err != nil {
			t.Fatal(err)
		}
		for p := base; p < base+n; p++ {
			if p >= elo && p <= ehi {
				t.Errorf("port %d is in the ephemeral range %d-%d", p, elo, ehi)
			}
			if seen[p] {
				t.Errorf("port %d handed out twice", p)
			}
			seen[p] = true
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				t.Errorf("picked port %d cannot be listened on: %v", p, err)
				continue
			}
			l.Close()
		}
	}
	if _, err := Pick("127.0.0.1", 0); err == nil {
		t.Error("Pick of 0 ports succeeded")
	}
}
