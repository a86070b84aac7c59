package basebackup

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"time"
)

// Modes of a basebackup's entries: PostgreSQL wants its data directory
// private to its OS user (pg_dir_create_mode, pg_file_create_mode). Owners
// are left 0: the compute that unpacks the tar gives the files to the
// server's OS user.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// tarball writes a data directory as a tar stream: each directory once,
// before anything in it, and files of a size known in advance.
type tarball struct {
	tw       *tar.Writer
	cw       *countingWriter
	modTime  time.Time
	dirs     map[string]bool
	progress func(bytes int64)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newTarball(w io.Writer, modTime time.Time, progress func(int64)) *tarball {
	cw := &countingWriter{w: w}
	return &tarball{tw: tar.NewWriter(cw), cw: cw, modTime: modTime, dirs: map[string]bool{}, progress: progress}
}

// dir writes the directory p (slash-separated, relative to the data
// directory) and its parents, unless already written.
func (t *tarball) dir(p string) error {
	if p == "." || p == "" || t.dirs[p] {
		return nil
	}
	if err := t.dir(path.Dir(p)); err != nil {
		return err
	}
	t.dirs[p] = true
	h := &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: dirMode, ModTime: t.modTime}
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write directory %s: %w", p, err)
	}
	return nil
}

// file writes the file p of size bytes, whose contents write produces
// (exactly size bytes, or the tar stream reports the difference).
func (t *tarball) file(p string, size int64, write func(w io.Writer) error) error {
	if err := t.dir(path.Dir(p)); err != nil {
		return err
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: p, Size: size, Mode: fileMode, ModTime: t.modTime}
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := write(t.tw); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	// Flush checks that exactly size bytes were written.
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if t.progress != nil {
		t.progress(t.cw.n)
	}
	return nil
}

// bytes writes the file p with contents b.
func (t *tarball) bytes(p string, b []byte) error {
	return t.file(p, int64(len(b)), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// close ends the tar stream (its two zero blocks).
func (t *tarball) close() error {
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("finish tar stream: %w", err)
	}
	if t.progress != nil {
		t.progress(t.cw.n)
	}
	return nil
}
