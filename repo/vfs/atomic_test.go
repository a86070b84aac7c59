package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFileAtomic replaces a file on the in-memory file system and
// crashes: the new contents survive; a write that fails at any step before
// the rename leaves the old contents and no temporary file.
func TestWriteFileAtomic(t *testing.T) {
	for _, failAt := range []Op{"", OpCreate, OpChmod, OpWrite, OpSync, OpRename} {
		t.Run(string(failAt)+"fail", func(t *testing.T) {
			mem := NewMem()
			fs := NewFaulty(mem)
			if err := fs.MkdirAll("/d", 0o755); err != nil {
				t.Fatal(err)
			}
			syncDir(t, fs, "/")
			if _, err := WriteFileAtomic(fs, "/d/f", []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			fs.SetRule(FailOnce(failAt, func(name string) bool { return strings.HasSuffix(name, ".tmp") }))
			renamed, err := WriteFileAtomic(fs, "/d/f", []byte("new"), 0o600)
			want := "new"
			if failAt != "" {
				want = "old"
				if !errors.Is(err, ErrInjected) || renamed {
					t.Errorf("WriteFileAtomic with %s failing: renamed %v, error %v; want not renamed, ErrInjected", failAt, renamed, err)
				}
			} else if err != nil || !renamed {
				t.Errorf("WriteFileAtomic: renamed %v, error %v", renamed, err)
			}
			mem.Crash()
			mem.Restart()
			if got, err := readFile(mem, "/d/f"); err != nil || got != want {
				t.Errorf("after a crash: %q, %v; want %q", got, err, want)
			}
			if _, err := mem.Stat("/d/f.tmp"); err == nil {
				t.Error("the temporary file is left")
			}
		})
	}
}

// TestWriteFileAtomicPerm checks the permission bits on the operating
// system's file system, where a file for the owner only must not be
// readable by others even for a moment after its replacement.
func TestWriteFileAtomicPerm(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	for _, perm := range []os.FileMode{0o600, 0o644} {
		if _, err := WriteFileAtomic(Default, name, []byte("x"), perm); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != perm {
			t.Errorf("mode %v, want %v", got, perm)
		}
	}
}
