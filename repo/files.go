package repo

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/zenithdb/zenith/repo/vfs"
)

// mkdirDurable creates dir (and its parents) and fsyncs its parent, so the
// new directory survives a crash.
func mkdirDurable(fs vfs.FS, dir string) error {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	return vfs.SyncDir(fs, filepath.Dir(dir))
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
