package control

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// startSleep starts `sleep 600` with the given extra argument and stops it
// when the test ends.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestPidfileRead(t *testing.T) {
	sleeper := startSleep(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		content  string // "" means no file
		program  string
		args     []string
		wantPID  int
		wantErr  error // ErrNotRunning or *StalePidfileError
		wantKept bool  // the file must still exist afterwards
	}{
		{name: "ours", content: strconv.Itoa(sleeper.Process.Pid), program: "sleep", args: []string{"600"}, wantPID: sleeper.Process.Pid, wantKept: true},
		{name: "ours with a prefix of the arguments", content: strconv.Itoa(sleeper.Process.Pid) + "\n", program: "sleep", wantPID: sleeper.Process.Pid, wantKept: true},
		{name: "a zenith daemon under another program name", content: strconv.Itoa(sleeper.Process.Pid), args: []string{"600"}, wantPID: sleeper.Process.Pid, wantKept: true},
		{name: "no file", program: "sleep", wantErr: ErrNotRunning},
		{name: "pid reused by another program", content: strconv.Itoa(sleeper.Process.Pid), program: "zenith", args: []string{"pageserver", "run"}, wantErr: &StalePidfileError{}},
		{name: "same program other arguments", content: strconv.Itoa(sleeper.Process.Pid), program: "sleep", args: []string{"601"}, wantErr: &StalePidfileError{}},
		{name: "process gone", content: strconv.Itoa(gone.Process.Pid), program: "true", wantErr: &StalePidfileError{}},
		{name: "zero", content: "0", program: "sleep", wantErr: &StalePidfileError{}},
		{name: "negative", content: "-1", program: "sleep", wantErr: &StalePidfileError{}},
		{name: "garbage", content: "12abc", program: "sleep", wantErr: &StalePidfileError{}},
		{name: "empty", content: "\n", program: "sleep", wantErr: &StalePidfileError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.pid")
			if tc.content != "" {
				if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p := Pidfile{Path: path, Program: tc.program, Args: tc.args}
			pid, err := p.Read()
			switch want := tc.wantErr.(type) {
			case nil:
				if err != nil || pid != tc.wantPID {
					t.Errorf("Read() = %d, %v; want %d", pid, err, tc.wantPID)
				}
			case *StalePidfileError:
				if !errors.As(err, &want) {
					t.Errorf("Read() = %d, %v; want a StalePidfileError", pid, err)
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("Read() = %d, %v; want %v", pid, err, want)
				}
			}
			_, statErr := os.Stat(path)
			if kept := statErr == nil; kept != tc.wantKept {
				t.Errorf("pidfile kept = %v, want %v", kept, tc.wantKept)
			}
		})
	}
	if !pgcluster.Alive(sleeper.Process.Pid) {
		t.Errorf("reading pidfiles touched the process they named")
	}
}

func TestPidfileWriteRead(t *testing.T) {
	sleeper := startSleep(t)
	p := Pidfile{Path: filepath.Join(t.TempDir(), "x.pid"), Program: "sleep", Args: []string{"600"}}
	if err := p.Write(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pid, err := p.Read(); err != nil || pid != sleeper.Process.Pid {
		t.Errorf("Read() after Write(%d) = %d, %v", sleeper.Process.Pid, pid, err)
	}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Read() after Remove = %v, want ErrNotRunning", err)
	}
	if err := p.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}
