package vfs

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// DiskFullError is a write that failed because its file system has no
// space left (ENOSPC) or the user's disk quota is used up (EDQUOT). The
// operating system's FS returns it for every such write, create, rename
// and sync, naming the file; errors.Is(err, syscall.ENOSPC) still holds.
// Nothing of the write may be counted as done: a caller that sees it
// keeps what it was writing (in memory, or to be fetched again) and
// retries once space is freed.
type DiskFullError struct {
	Path string
	Err  error
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("disk full: %s: %v", e.Path, e.Err)
}

func (e *DiskFullError) Unwrap() error { return e.Err }

// IsDiskFull reports whether err, or an error it wraps, is ENOSPC or
// EDQUOT.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskFull returns err as a *DiskFullError naming path if it is one that
// IsDiskFull recognises, otherwise err unchanged.
func diskFull(path string, err error) error {
	var dfe *DiskFullError
	if err == nil || errors.As(err, &dfe) || !IsDiskFull(err) {
		return err
	}
	return &DiskFullError{Path: path, Err: err}
}

// DiskState remembers whether a process's writes find its disk full: the
// last disk-full error since the last write that succeeded, when the
// disk became full, and how many writes failed for it in all. It is what
// status and metrics report. The zero value is ready to use.
type DiskState struct {
	mu     sync.Mutex
	err    error
	since  time.Time
	errors int64
}

// Note records the outcome of a write: a disk-full error makes the disk
// full (and is counted), success makes it not full; other errors change
// nothing. It returns err.
func (d *DiskState) Note(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err == nil:
		d.err = nil
	case IsDiskFull(err):
		if d.err == nil {
			d.since = time.Now()
		}
		d.err = err
		d.errors++
	}
	return err
}

// Full returns since when the disk is full, how many writes failed for a
// full disk in all, and the last disk-full error: nil if the last write
// succeeded (or none failed).
func (d *DiskState) Full() (since time.Time, errors int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.since, d.errors, d.err
}
