package layer

import (
	"errors"
	"fmt"
)

// CorruptionError reports a file of the repository whose contents fail a
// check: for a layer file a checksum, the trailer, the name, or the
// encoding of a value; for a metadata file its checksum or syntax; or a
// layer file the metadata lists that is missing. Offset is the byte offset
// of the bad part when known, else -1.
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

// ErrRemoved is returned by reads of a layer that garbage collection or
// compaction has removed since the reader found it.
var ErrRemoved = errors.New("layer removed")

// ErrOutOfOrder is returned when values are added to a layer out of key and
// LSN order, or twice for the same key and LSN.
var ErrOutOfOrder = errors.New("value out of order")

func corruptf(file string, offset int64, format string, args ...any) error {
	return &CorruptionError{File: file, Offset: offset, Err: fmt.Errorf(format, args...)}
}
