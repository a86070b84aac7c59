package vfs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces name with data durably: it writes a temporary
// file name+".tmp" with the permission bits perm, fsyncs it, renames it
// over name and fsyncs the directory. renamed reports whether the new
// contents are in place: if it fails before the rename, name is
// untouched; if only the directory fsync fails, the new contents are in
// place but may not survive a crash. A leftover temporary file is a
// failed write's, for the reader of name to ignore or remove.
func WriteFileAtomic(fs FS, name string, data []byte, perm os.FileMode) (renamed bool, err error) {
	tmp := name + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return false, fmt.Errorf("create %s: %w", tmp, err)
	}
	// Before the data goes in: it may be for the owner's eyes only.
	err = fs.Chmod(tmp, perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, name)
	}
	if err != nil {
		_ = fs.Remove(tmp) // best effort: see above
		return false, fmt.Errorf("write %s: %w", name, err)
	}
	return true, SyncDir(fs, filepath.Dir(name))
}

// SyncDir fsyncs a directory, making its entries (created, renamed and
// removed files) durable.
func SyncDir(fs FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// MkdirDurable creates dir (and its parents) and fsyncs its parent, so the
// new directory survives a crash.
func MkdirDurable(fs FS, dir string, perm os.FileMode) error {
	if err := fs.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	return SyncDir(fs, filepath.Dir(dir))
}

// ReadFile returns the contents of the named file.
func ReadFile(fs FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}
