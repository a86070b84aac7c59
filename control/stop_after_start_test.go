package control_test

import (
	"strings"
	"testing"
)

// TestStopRightAfterStart: without safekeepers, a compute stopped right
// after its start stops cleanly and at once, and its next start reuses its
// data directory. Before, pg start returned before the page server
// streamed from the compute; the compute's shutdown checkpoint then never
// reached the page server, the stop waited 30 s for it and said "its next
// start rebuilds the data directory", and the next start did.
func TestStopRightAfterStart(t *testing.T) {
	env := newSKEnv(t, 0)
	for i := 0; i < 2; i++ {
		env.Zenith("pg", "start", "main")
		_, errOut, err := env.Run("pg", "stop", "main")
		if err != nil || strings.Contains(errOut, "rebuilds the data directory") {
			t.Fatalf("zenith pg stop main right after its start: %v\n%s", err, errOut)
		}
	}
	_, errOut, err := env.Run("pg", "start", "main")
	if err != nil || strings.Contains(errOut, "not stopped cleanly") {
		t.Fatalf("zenith pg start main after a clean stop: %v\n%s", err, errOut)
	}
}
