package control

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// syncFiles makes a cleanly stopped node's data directory and tablespaces
// durable, so that it may be reused after a crash of the host: computes
// run with fsync=off (computeSettings), so PostgreSQL's shutdown
// checkpoint left its writes in the page cache. A lazy node is never
// reused once it ran (Node.Fresh), so there is nothing to sync.
func (n *Node) syncFiles() error {
	if n.IsLazy() {
		return nil
	}
	for _, dir := range []string{n.DataDir(), n.TablespacesDir()} {
		if err := syncTree(dir); err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
	}
	return nil
}

// syncTree fsyncs every regular file and directory under root (symbolic
// links are not followed); a missing root is nothing to sync.
func syncTree(root string) error {
	if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}
