package repo

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/zenithdb/zenith/repo/vfs"
)

// writeFileAtomic replaces name with data durably: write a temporary file,
// fsync it, rename it over name, fsync the directory. renamed reports
// whether the new contents are in place: if it fails before the rename,
// name is untouched; if only the final directory fsync fails, the new
// contents are in place but may not survive a crash.
func writeFileAtomic(fs vfs.FS, name string, data []byte) (renamed bool, err error) {
	tmp := name + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return false, fmt.Errorf("create %s: %w", tmp, err)
	}
	_, err = f.Write(data)
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
		_ = fs.Remove(tmp) // best effort: a leftover .tmp is ignored at load
		return false, fmt.Errorf("write %s: %w", name, err)
	}
	return true, syncDir(fs, filepath.Dir(name))
}

// syncDir fsyncs a directory, making its entries (created, renamed and
// removed files) durable.
func syncDir(fs vfs.FS, dir string) error {
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

// mkdirDurable creates dir (and its parents) and fsyncs its parent, so the
// new directory survives a crash.
func mkdirDurable(fs vfs.FS, dir string) error {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	return syncDir(fs, filepath.Dir(dir))
}

func readFile(fs vfs.FS, name string) ([]byte, error) {
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
