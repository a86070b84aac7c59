// Package netport picks TCP ports for servers that are about to listen:
// a compute node, a test's page server or safekeeper.
//
// A port the kernel hands out for "port 0" comes from its ephemeral range
// (net.ipv4.ip_local_port_range), the same range every outgoing
// connection takes its local port from. Between the pick and the server's
// listen, a connection (a safekeeper dialing its peers, a page server
// dialing a compute) can take that very port, and the server fails with
// "address already in use". Pick therefore chooses below the ephemeral
// range, where only listeners live, and never hands out one port twice in
// a process.
package netport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the first port Pick considers: well above the ports of
// well-known services.
const lowest = 10000

// given are the ports Pick returned in this process.
var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Pick returns the first of n consecutive ports that nothing listens on
// at host (an IP address) right now, outside the kernel's ephemeral port
// range, and that this process was not given before.
func Pick(host string, n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("netport: %d ports asked for", n)
	}
	lo, hi := searchRange()
	mu.Lock()
	defer mu.Unlock()
	for attempt := 0; attempt < 200; attempt++ {
		base := lo + rand.IntN(hi-lo-n+1)
		if free(host, base, n) {
			for p := base; p < base+n; p++ {
				given[p] = true
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("netport: no %d consecutive free ports on %s between %d and %d", n, host, lo, hi)
}

// free reports whether ports base..base+n-1 were not given and can be
// listened on at host.
func free(host string, base, n int) bool {
	for p := base; p < base+n; p++ {
		if given[p] {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// searchRange is [lo, hi) of the ports to pick from: those below the
// ephemeral range, or above it when it leaves too few below.
func searchRange() (lo, hi int) {
	elo, ehi, err := ephemeralRange()
	switch {
	case err != nil:
		return lowest, 32768 // Linux's default range starts at 32768
	case elo-lowest >= 1000:
		return lowest, elo
	case 65535-ehi >= 1000:
		return ehi + 1, 65536
	default:
		return lowest, 65536 // the kernel's range is everything: no better choice
	}
}

// ephemeralRange reads the kernel's ephemeral port range.
func ephemeralRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, errors.New("ip_local_port_range: want two numbers")
	}
	if lo, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, err
	}
	if hi, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, err
	}
	return lo, hi, nil
}
