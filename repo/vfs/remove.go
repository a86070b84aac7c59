package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// RemoveAll removes name and, if it is a directory, everything under it,
// deepest first. A name that does not exist is not an error. It does not
// fsync: a caller that needs the removal durable syncs the parent.
func RemoveAll(fsys FS, name string) error {
	info, err := fsys.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if info.IsDir() {
		entries, err := fsys.List(name)
		if err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
		for _, e := range entries {
			if err := RemoveAll(fsys, filepath.Join(name, e)); err != nil {
				return err
			}
		}
	}
	if err := fsys.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}
