package layer

import (
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo/vfs"
)

// CorruptionError reports a layer or metadata file of the repository
// whose contents fail a check, or a layer file the metadata lists that is
// missing; it is vfs.CorruptionError.
type CorruptionError = vfs.CorruptionError

// ErrRemoved is returned by reads of a layer that garbage collection or
// compaction has removed since the reader found it.
var ErrRemoved = errors.New("layer removed")

// ErrOutOfOrder is returned when values are added to a layer out of key and
// LSN order, or twice for the same key and LSN.
var ErrOutOfOrder = errors.New("value out of order")

func corruptf(file string, offset int64, format string, args ...any) error {
	return &CorruptionError{File: file, Offset: offset, Err: fmt.Errorf(format, args...)}
}
