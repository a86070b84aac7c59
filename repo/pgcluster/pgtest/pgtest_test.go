package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNewRemovesStaleDirs: directories left by dead test processes go,
// unless a server still runs in one; live processes' directories stay.
func TestNewRemovesStaleDirs(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
	}()
	mk := func(owner int, postmaster int) string {
		d, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, owner))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if postmaster != 0 {
			if err := os.MkdirAll(filepath.Join(d, "data"), 0o755); err != nil {
				t.Fatal(err)
			}
			pidFile := filepath.Join(d, "data", "postmaster.pid")
			if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", postmaster)), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	stale := mk(dead.Process.Pid, 0)
	serverRuns := mk(dead.Process.Pid, sleeper.Process.Pid)
	ownerRuns := mk(sleeper.Process.Pid, 0)

	New(t, nil)
	for _, tt := range []struct {
		dir  string
		kept bool
	}{{stale, false}, {serverRuns, true}, {ownerRuns, true}} {
		_, err := os.Stat(tt.dir)
		if kept := err == nil; kept != tt.kept {
			t.Errorf("%s kept = %v, want %v", tt.dir, kept, tt.kept)
		}
	}
}
