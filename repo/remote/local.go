package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/zenithdb/zenith/repo/vfs"
)

// uploadPrefix starts the name of a file being uploaded; List skips them.
const uploadPrefix = ".upload-"

// LocalDir is a Storage in a directory of a file system: the object at
// "a/b" is the file <root>/a/b. Uploads are written to a temporary file,
// fsynced and renamed into place, and the directory is fsynced.
type LocalDir struct {
	fs   vfs.FS
	root string
}

// NewLocalDir returns the storage in root (created on first upload).
func NewLocalDir(fs vfs.FS, root string) *LocalDir { return &LocalDir{fs: fs, root: root} }

func (l *LocalDir) file(p string) string { return filepath.Join(l.root, filepath.FromSlash(p)) }

// Upload implements Storage.
func (l *LocalDir) Upload(ctx context.Context, p string, r io.Reader) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := l.file(p)
	dir := filepath.Dir(name)
	// The directories about to be created must be made durable too:
	// syncs lists the directory of the new file and, up to the parent of
	// the highest directory created, each parent.
	syncs := []string{dir}
	created := ""
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := l.fs.Stat(d); err == nil {
			break
		}
		created = d
	}
	for d := dir; created != "" && d != filepath.Dir(created); {
		d = filepath.Dir(d)
		syncs = append(syncs, d)
	}
	if err := l.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, uploadPrefix+hex.EncodeToString(rnd[:]))
	f, err := l.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	_, err = io.Copy(f, readerCtx{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, name)
	}
	if err != nil {
		_ = l.fs.Remove(tmp) // best effort; List never shows it
		return fmt.Errorf("upload %s: %w", p, err)
	}
	for _, d := range syncs {
		if err := vfs.SyncDir(l.fs, d); err != nil {
			return fmt.Errorf("upload %s: %w", p, err)
		}
	}
	return nil
}

// Download implements Storage.
func (l *LocalDir) Download(ctx context.Context, p string, w io.Writer) error {
	if err := checkPath(p); err != nil {
		return err
	}
	f, err := l.fs.Open(l.file(p))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("download %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", p, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fmt.Errorf("download %s: %w", p, ErrNotFound)
	}
	if _, err := io.Copy(w, readerCtx{ctx, f}); err != nil {
		return fmt.Errorf("download %s: %w", p, err)
	}
	return nil
}

// List implements Storage.
func (l *LocalDir) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	// Walk from the deepest directory the prefix names completely.
	start := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = prefix[:i]
	}
	err := l.walk(ctx, start, func(p string) {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Strings(out)
	return out, nil
}

// walk calls fn with the path of every object under the directory dir (a
// slash path relative to the root).
func (l *LocalDir) walk(ctx context.Context, dir string, fn func(string)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := l.fs.List(l.file(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n, uploadPrefix) {
			continue
		}
		p := path.Join(dir, n)
		st, err := l.fs.Stat(l.file(p))
		if err != nil {
			return err
		}
		if st.IsDir() {
			if err := l.walk(ctx, p, fn); err != nil {
				return err
			}
			continue
		}
		fn(p)
	}
	return nil
}

// Delete implements Storage.
func (l *LocalDir) Delete(ctx context.Context, p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := l.file(p)
	err := l.fs.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing to make durable; its directory may not exist either
		// (a timeline deleted before anything of it was uploaded).
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	return vfs.SyncDir(l.fs, filepath.Dir(name))
}

// readerCtx stops a copy when its context ends.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
