// Package tarfile extracts a tar of a PostgreSQL data directory safely:
// only directories and regular files, with cleaned relative names that
// stay inside the target, no links, devices or duplicates, and bounded
// sizes. The page server's import (an upload from anyone who can reach it)
// and the control plane's basebackup unpacking both use it.
//
// What it must never do: write outside the target directory, follow or
// create a link, or read an archive without bounds.
package tarfile

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits on an extracted tar: no file of a PostgreSQL data directory is
// larger than a relation segment or a WAL segment (1 GiB at most, by
// PostgreSQL's own limits), and a whole upload is bounded so that a
// runaway client cannot fill the disk.
const (
	MaxFileBytes  = 1 << 30
	MaxTotalBytes = 256 << 30
	MaxEntries    = 10_000_000
	// MaxTrailer is how much data may follow the tar's end-of-archive
	// marker (tar writers pad to a record size; 10 KiB by default).
	MaxTrailer = 1 << 20
)

// ErrBadTar marks an archive that is not an acceptable tar of a data
// directory.
var ErrBadTar = errors.New("bad data directory tar")

// ExtractDataDir unpacks a tar of a data directory into dir, which
// must exist and be empty: directories 0700 and files 0600, as PostgreSQL
// wants them. It accepts only directories and regular files
// whose cleaned relative names stay inside dir; absolute names, "..",
// links of any kind, devices, duplicate entries and oversized files or
// archives are refused (ErrBadTar), leaving the caller to remove dir.
// It reads r to its end (a COPY stream is consumed), allowing MaxTrailer
// bytes after the end-of-archive marker.
func ExtractDataDir(r io.Reader, dir string) error {
	return extract(r, dir, "", nil)
}

// ExtractImport is ExtractDataDir for the tar of a data directory to
// import: it also returns the location each pg_tblspc/<OID> directory
// entry carries (TablespaceLocationKey), by OID, for the tablespaces the
// directory had; those directories are extracted as plain directories.
func ExtractImport(r io.Reader, dir string) (map[uint32]string, error) {
	locations := map[uint32]string{}
	if err := extract(r, dir, "", locations); err != nil {
		return nil, err
	}
	return locations, nil
}

// TablespaceLocationKey is the PAX extended-header record that a
// basebackup puts on the pg_tblspc/<OID> directory entry of a tablespace
// created with a LOCATION: the location on the compute that created it.
// The tar itself never holds a link (see package pageserver's
// basebackup); whoever extracts it decides where the tablespace lives.
const TablespaceLocationKey = "ZENITH.tablespace_location"

// ExtractBasebackup is ExtractDataDir for a basebackup that a compute
// node runs on. A pg_tblspc/<OID> directory entry carrying
// TablespaceLocationKey becomes the directory tablespacesDir/<OID>, and
// pg_tblspc/<OID> a symbolic link to it, as CREATE TABLESPACE ...
// LOCATION leaves a data directory; the original location is never
// touched. Any other pg_tblspc/<OID> (an in-place tablespace) is a plain
// directory, as is every entry ExtractDataDir extracts. It returns the
// original locations, by OID.
func ExtractBasebackup(r io.Reader, dir, tablespacesDir string) (map[uint32]string, error) {
	if tablespacesDir == "" {
		return nil, errors.New("tarfile: ExtractBasebackup needs a directory for tablespaces")
	}
	locations := map[uint32]string{}
	if err := extract(r, dir, tablespacesDir, locations); err != nil {
		return nil, err
	}
	return locations, nil
}

// extract is ExtractDataDir, ExtractBasebackup when tablespacesDir is
// set, and ExtractImport when locations is not nil.
func extract(r io.Reader, dir, tablespacesDir string, locations map[uint32]string) error {
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadTar, err)
		}
		if n >= MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrBadTar, MaxEntries)
		}
		name, err := entryPath(h.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if loc, ok := h.PAXRecords[TablespaceLocationKey]; ok {
			oid, err := tablespaceEntry(name, h.Typeflag)
			if err != nil {
				return err
			}
			if locations != nil {
				locations[oid] = loc
			}
			if tablespacesDir != "" {
				if err := linkTablespace(oid, target, tablespacesDir); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				continue
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if h.Size < 0 || h.Size > MaxFileBytes {
				return fmt.Errorf("%w: %s is %d bytes, more than any file of a data directory (%d)", ErrBadTar, name, h.Size, MaxFileBytes)
			}
			if total += h.Size; total > MaxTotalBytes {
				return fmt.Errorf("%w: more than %d bytes", ErrBadTar, int64(MaxTotalBytes))
			}
			if err := writeFile(tr, target, h.Size); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeSymlink, tar.TypeLink:
			return fmt.Errorf("%w: %s is a link; a data directory's tar holds none (its tablespaces are directories)", ErrBadTar, name)
		default:
			return fmt.Errorf("%w: %s is neither a file nor a directory (tar type %q)", ErrBadTar, name, h.Typeflag)
		}
	}
	n, err := io.Copy(io.Discard, io.LimitReader(r, MaxTrailer+1))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadTar, err)
	}
	if n > MaxTrailer {
		return fmt.Errorf("%w: more than %d bytes after the end of the archive", ErrBadTar, MaxTrailer)
	}
	return nil
}

// entryPath checks a tar entry's name and returns it cleaned and
// relative ("." for the top directory itself).
func entryPath(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || strings.Contains(name, `\`) {
		return "", fmt.Errorf("%w: entry name %q", ErrBadTar, truncate(name, 100))
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("%w: absolute entry name %q", ErrBadTar, truncate(name, 100))
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: entry name %q leaves the data directory", ErrBadTar, truncate(name, 100))
	}
	return clean, nil
}

// tablespaceEntry checks that an entry carrying a tablespace location,
// cleaned name name and type typ, is the directory pg_tblspc/<OID>, and
// returns the OID.
func tablespaceEntry(name string, typ byte) (uint32, error) {
	parent, base := path.Split(name)
	oid, err := strconv.ParseUint(base, 10, 32)
	if err != nil || oid == 0 || parent != "pg_tblspc/" || typ != tar.TypeDir {
		return 0, fmt.Errorf("%w: entry %q carries a tablespace location but is not the directory pg_tblspc/<OID>", ErrBadTar, truncate(name, 100))
	}
	return uint32(oid), nil
}

// linkTablespace makes the directory of tablespace oid, created with a
// LOCATION, whose path in the data directory is target:
// tablespacesDir/<OID>, and target a symbolic link to it.
func linkTablespace(oid uint32, target, tablespacesDir string) error {
	dir, err := filepath.Abs(filepath.Join(tablespacesDir, strconv.FormatUint(uint64(oid), 10)))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	if err := os.Symlink(dir, target); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: duplicate entry", ErrBadTar)
		}
		return err
	}
	return nil
}

// writeFile writes one regular file; its parent directories are created
// as needed (tar writers may omit them), and an existing file is an error
// (a duplicate entry).
func writeFile(r io.Reader, target string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: duplicate entry", ErrBadTar)
	}
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: the archive ends inside the file", ErrBadTar)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("%w: %d bytes, header says %d", ErrBadTar, n, size)
	}
	return err
}

// truncate shortens outside input quoted in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
