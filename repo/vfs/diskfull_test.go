package vfs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

// TestDiskFullFromTheOS writes to /dev/full, which fails every write with
// ENOSPC: the operating system's FS must say which file is full.
func TestDiskFullFromTheOS(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	f, err := Default.OpenReadWrite("/dev/full")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.Write([]byte("x"))
	var dfe *DiskFullError
	if !errors.As(err, &dfe) || dfe.Path != "/dev/full" || !errors.Is(err, syscall.ENOSPC) || !IsDiskFull(err) {
		t.Fatalf("write to /dev/full: error %v (%T), want a *DiskFullError naming it and wrapping ENOSPC", err, err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.As(err, &dfe) {
		t.Errorf("WriteAt to /dev/full: error %v (%T), want a *DiskFullError", err, err)
	}
}

func TestDiskState(t *testing.T) {
	var d DiskState
	full := fmt.Errorf("flush: %w", &DiskFullError{Path: "/x", Err: syscall.EDQUOT})
	steps := []struct {
		err      error
		wantFull bool
		wantN    int64
	}{
		{nil, false, 0},
		{errors.New("permission denied"), false, 0},
		{full, true, 1},
		{errors.New("other"), true, 1},
		{&os.PathError{Op: "write", Path: "/y", Err: syscall.ENOSPC}, true, 2},
		{nil, false, 2},
	}
	for i, s := range steps {
		if got := d.Note(s.err); got != s.err {
			t.Errorf("step %d: Note returned %v, want its argument", i, got)
		}
		_, n, err := d.Full()
		if (err != nil) != s.wantFull || n != s.wantN {
			t.Errorf("step %d (%v): Full() = %v, %d errors; want full %v, %d errors", i, s.err, err, n, s.wantFull, s.wantN)
		}
	}
}
