package vfs

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, fs FS, name, data string, sync bool) {
	t.Helper()
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(fs FS, name string) (string, error) {
	f, err := fs.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func syncDir(t *testing.T, fs FS, dir string) {
	t.Helper()
	if err := SyncDir(fs, dir); err != nil {
		t.Fatal(err)
	}
}

// TestMemCrashLosesUnsynced checks the crash model the repository's tests
// rely on: synced files in synced directories survive, the rest is lost.
func TestMemCrashLosesUnsynced(t *testing.T) {
	fs := NewMem()
	if err := fs.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	syncDir(t, fs, "/")
	writeFile(t, fs, "/d/durable", "a", true)
	syncDir(t, fs, "/d")
	writeFile(t, fs, "/d/unsynced-entry", "b", true) // file synced, directory not
	writeFile(t, fs, "/d/durable", "c", false)       // new contents not synced

	fs.Crash()
	writeFile(t, fs, "/d/after-crash", "d", true)
	syncDir(t, fs, "/d")
	fs.Restart()

	if got, err := readFile(fs, "/d/durable"); err != nil || got != "a" {
		t.Errorf("durable file after crash = %q, %v; want %q", got, err, "a")
	}
	for _, name := range []string{"/d/unsynced-entry", "/d/after-crash"} {
		if _, err := fs.Stat(name); err == nil {
			t.Errorf("%s survived the crash", name)
		}
	}
}

func TestFaultyFailOnce(t *testing.T) {
	fs := NewFaulty(Default)
	dir := t.TempDir()
	fs.SetRule(FailOnce(OpSync, func(n string) bool { return strings.HasSuffix(n, ".layer") }))
	name := filepath.Join(dir, "x.layer")
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); !errors.Is(err, ErrInjected) {
		t.Errorf("first sync of %s: error = %v, want ErrInjected", name, err)
	}
	if err := f.Sync(); err != nil {
		t.Errorf("second sync: %v, want success", err)
	}
	writeFile(t, fs, filepath.Join(dir, "other"), "x", true)
	fs.SetRule(func(op Op, n string) error {
		if op == OpRename {
			return ErrInjected
		}
		return nil
	})
	if err := fs.Rename(name, name+".2"); !errors.Is(err, ErrInjected) {
		t.Errorf("rename: error = %v, want ErrInjected", err)
	}
	fs.SetRule(nil)
	if err := fs.Rename(name, name+".2"); err != nil {
		t.Errorf("rename without a rule: %v", err)
	}
}
