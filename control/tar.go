package control

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/pageserver"
)

// tarDir writes the files and directories under dir to w as a tar
// archive with paths relative to dir (the form import expects).
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, pipes: nothing a data directory needs
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, info.Size())
		return err
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return nil
}

// untar extracts the tar archive read from r into dir, which must exist:
// directories 0700 and files 0600, as PostgreSQL wants them. Entries
// that would land outside dir, and anything but files and directories, are
// errors.
//
// A basebackup's pg_tblspc/<OID> directory entry that carries the
// location the tablespace was created at (pageserver.TablespaceLocationPAXKey)
// becomes tablespacesDir/<OID>, with pg_tblspc/<OID> a symbolic link to
// it, as CREATE TABLESPACE ... LOCATION leaves a data directory; the
// original location is never touched (see Node.TablespacesDir). Any other
// pg_tblspc/<OID> (an in-place tablespace) is a plain directory.
func untar(r io.Reader, dir, tablespacesDir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read basebackup tar: %w", err)
		}
		name := filepath.FromSlash(strings.TrimSuffix(hdr.Name, "/"))
		if name == "." || name == "" {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("basebackup tar: entry %q is not inside the data directory", hdr.Name)
		}
		path := filepath.Join(dir, name)
		if _, ok := hdr.PAXRecords[pageserver.TablespaceLocationPAXKey]; ok {
			if err := linkTablespace(name, path, tablespacesDir, hdr.Typeflag); err != nil {
				return fmt.Errorf("basebackup tar: %w", err)
			}
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return fmt.Errorf("basebackup tar: %w", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return fmt.Errorf("basebackup tar: %w", err)
			}
			if err := writeTarFile(path, tr); err != nil {
				return fmt.Errorf("basebackup tar: %s: %w", hdr.Name, err)
			}
		default:
			return fmt.Errorf("basebackup tar: entry %q has type %q: only files and directories are expected", hdr.Name, hdr.Typeflag)
		}
	}
}

// linkTablespace makes the directory of a tablespace created with a
// LOCATION, whose entry name is pg_tblspc/<OID> and whose path in the data
// directory is path: tablespacesDir/<OID>, and path a symbolic link to it.
func linkTablespace(name, path, tablespacesDir string, typ byte) error {
	parent, oid := filepath.Split(name)
	if _, err := strconv.ParseUint(oid, 10, 32); err != nil || parent != "pg_tblspc"+string(filepath.Separator) || typ != tar.TypeDir {
		return fmt.Errorf("entry %q carries a tablespace location but is not the directory pg_tblspc/<OID>", name)
	}
	if tablespacesDir == "" {
		return fmt.Errorf("tablespace %s has a location, but there is no directory to put it in", oid)
	}
	target, err := filepath.Abs(filepath.Join(tablespacesDir, oid))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.Symlink(target, path)
}

func writeTarFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
