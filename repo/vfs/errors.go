package vfs

import "fmt"

// CorruptionError reports a file whose contents fail a check: a checksum,
// a trailer, a length, a name, a missing file that others say exists.
// Offset is the byte offset of the bad part when known, else -1. The
// repository's layer and metadata files and the safekeepers' control and
// WAL segment files all report it.
type CorruptionError struct {
	File   string
	Offset int64
	Err    error
}

func (e *CorruptionError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("corrupt file %s at offset %d: %v", e.File, e.Offset, e.Err)
	}
	return fmt.Sprintf("corrupt file %s: %v", e.File, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }
