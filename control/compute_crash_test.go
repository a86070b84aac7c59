package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLastPanic reads the reason of a crash from the end of server logs:
// the last PANIC, unless the server started again after it.
func TestLastPanic(t *testing.T) {
	for _, tc := range []struct {
		name, log, want string
	}{
		{"none", "LOG:  database system is ready to accept connections\n", ""},
		{"disk full",
			"LOG:  database system is ready to accept connections\n" +
				"2026-12-03 14:30:01.123 UTC [123] PANIC:  could not write to file \"pg_wal/xlogtemp.123\": No space left on device\n" +
				"LOG:  WAL writer process (PID 123) was terminated by signal 6: Aborted\n",
			`PANIC: could not write to file "pg_wal/xlogtemp.123": No space left on device`},
		{"started again",
			"PANIC:  could not write to file \"pg_wal/xlogtemp.9\": No space left on device\n" +
				"LOG:  database system is ready to accept connections\n", ""},
		{"no newline", "PANIC:  cut short", "PANIC: cut short"},
		{"long log", strings.Repeat("LOG:  checkpoint starting: time\n", 4000) + "PANIC:  the end\n", "PANIC: the end"},
		{"panic beyond the tail", "PANIC:  long ago\n" + strings.Repeat("LOG:  checkpoint starting: time\n", 4000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "postgres.log")
			if err := os.WriteFile(p, []byte(tc.log), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := lastPanic(p); got != tc.want {
				t.Errorf("lastPanic = %q, want %q", got, tc.want)
			}
		})
	}
	if got := lastPanic(filepath.Join(t.TempDir(), "missing.log")); got != "" {
		t.Errorf("lastPanic of a missing log = %q, want none", got)
	}
}
