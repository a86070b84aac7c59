package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Storage stores objects by path.
type Storage interface {
	// Upload stores everything r yields as the object at path, replacing
	// any object there; the object appears whole or not at all.
	Upload(ctx context.Context, path string, r io.Reader) error
	// Download writes the object at path to w; ErrNotFound if there is
	// none.
	Download(ctx context.Context, path string, w io.Writer) error
	// List returns the paths of the objects whose path starts with
	// prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object at path; removing a missing object is not
	// an error.
	Delete(ctx context.Context, path string) error
}

// ErrNotFound is returned by Download for a path with no object.
var ErrNotFound = errors.New("object not found")

// ErrInvalidPath is returned for a path that is empty, absolute, has empty
// or "." or ".." segments, or a segment starting with the prefix reserved
// for uploads in progress.
var ErrInvalidPath = errors.New("invalid object path")

// checkPath validates an object path.
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: %q", ErrInvalidPath, p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, uploadPrefix) || strings.ContainsRune(seg, 0) {
			return fmt.Errorf("%w: %q", ErrInvalidPath, p)
		}
	}
	return nil
}
