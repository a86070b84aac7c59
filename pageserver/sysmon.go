package pageserver

import (
	"strings"
)

// sysmonSetting is the GODEBUG setting the page server runs with: Go's
// schedtrace at its largest period, so long (2^31-1 ms, 24.8 days of the
// host's monotonic clock) that the scheduler's trace line is in
// practice never printed (a host up longer than that prints one at the
// start, then one every 24.8 days).
//
// The setting is for its other effect: with schedtrace set, the
// runtime's monitor thread (sysmon) never goes into its deep sleep.
// Without it, sysmon sleeps whenever every P is idle, as they are while
// a page stream waits for its client's next request, and the first
// system call after that (the read of the request) wakes it with a
// futex; sysmon then polls every 20 µs until the process is idle again
// and sleeps once more. On this VM, where a context switch costs tens of
// µs, that was one to two wake-ups of another thread per single-page
// request: sysmon's nanosleep 8.5% of the page server's CPU in a perf
// profile of single-block reads, the futex wake-up another 3.6%. Kept
// awake, sysmon backs off to one poll every 10 ms.
const sysmonSetting = "schedtrace=2147483647"

// RuntimeEnviron returns environ with the GODEBUG setting the page server
// runs with added (sysmonSetting), and whether it had to be added: the
// runtime reads schedtrace only at start, so a page server started
// without it executes itself again with this environment. A GODEBUG
// that sets schedtrace already (someone tracing the scheduler) is left
// as it is.
func RuntimeEnviron(environ []string) ([]string, bool) {
	const prefix = "GODEBUG="
	out := make([]string, 0, len(environ)+1)
	var godebug string
	found := false
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, prefix); ok {
			// The last one wins, as in os.Getenv.
			godebug, found = v, true
			continue
		}
		out = append(out, kv)
	}
	for _, setting := range strings.Split(godebug, ",") {
		if strings.HasPrefix(setting, "schedtrace=") {
			return environ, false
		}
	}
	if found && godebug != "" {
		// Later settings override earlier ones: the caller's come last.
		godebug = sysmonSetting + "," + godebug
	} else {
		godebug = sysmonSetting
	}
	return append(out, prefix+godebug), true
}
