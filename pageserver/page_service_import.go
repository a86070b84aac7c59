package pageserver

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits on an imported tar: no file of a PostgreSQL data directory is
// larger than a relation segment or a WAL segment (1 GiB at most, by
// PostgreSQL's own limits), and a whole upload is bounded so that a
// runaway client cannot fill the disk.
const (
	maxImportFileBytes  = 1 << 30
	maxImportTotalBytes = 256 << 30
	maxImportEntries    = 10_000_000
	// maxTarTrailer is how much data may follow the tar's end-of-archive
	// marker (tar writers pad to a record size; 10 KiB by default).
	maxTarTrailer = 1 << 20
)

// errBadTar marks an upload that is not an acceptable tar of a data
// directory.
var errBadTar = errors.New("bad data directory tar")

// extractDataDirTar unpacks a tar of a data directory into dir, which
// must exist and be empty. It accepts only directories and regular files
// whose cleaned relative names stay inside dir; absolute names, "..",
// links of any kind, devices, duplicate entries and oversized files or
// archives are refused (errBadTar), leaving the caller to remove dir.
// It reads r to its end, so that the COPY stream is consumed.
func extractDataDirTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errBadTar, err)
		}
		if n >= maxImportEntries {
			return fmt.Errorf("%w: more than %d entries", errBadTar, maxImportEntries)
		}
		name, err := tarEntryPath(h.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if h.Size < 0 || h.Size > maxImportFileBytes {
				return fmt.Errorf("%w: %s is %d bytes, more than any file of a data directory (%d)", errBadTar, name, h.Size, maxImportFileBytes)
			}
			if total += h.Size; total > maxImportTotalBytes {
				return fmt.Errorf("%w: more than %d bytes", errBadTar, int64(maxImportTotalBytes))
			}
			if err := writeTarFile(tr, target, h.Size); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeSymlink, tar.TypeLink:
			return fmt.Errorf("%w: %s is a link; import a data directory without links (tablespaces or a pg_wal elsewhere are not supported)", errBadTar, name)
		default:
			return fmt.Errorf("%w: %s is neither a file nor a directory (tar type %q)", errBadTar, name, h.Typeflag)
		}
	}
	n, err := io.Copy(io.Discard, io.LimitReader(r, maxTarTrailer+1))
	if err != nil {
		return fmt.Errorf("%w: %v", errBadTar, err)
	}
	if n > maxTarTrailer {
		return fmt.Errorf("%w: more than %d bytes after the end of the archive", errBadTar, maxTarTrailer)
	}
	return nil
}

// tarEntryPath checks a tar entry's name and returns it cleaned and
// relative ("." for the top directory itself).
func tarEntryPath(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || strings.Contains(name, `\`) {
		return "", fmt.Errorf("%w: entry name %q", errBadTar, truncate(name, 100))
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("%w: absolute entry name %q", errBadTar, truncate(name, 100))
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: entry name %q leaves the data directory", errBadTar, truncate(name, 100))
	}
	return clean, nil
}

// writeTarFile writes one regular file; its parent directories are created
// as needed (tar writers may omit them), and an existing file is an error
// (a duplicate entry).
func writeTarFile(r io.Reader, target string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: duplicate entry", errBadTar)
	}
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: the archive ends inside the file", errBadTar)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("%w: %d bytes, header says %d", errBadTar, n, size)
	}
	return err
}
