package control

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/tarfile"
)

// tarDir writes the files and directories under dir to w as a tar
// archive with paths relative to dir (the form import expects).
func tarDir(w io.Writer, dir string) error {
	return tarDirExcept(w, dir, nil, nil)
}

// tarDirExcept is tarDir without the regular files for which skip
// (if not nil) returns true; rel is the path relative to dir, with
// slashes. A tablespace's link pg_tblspc/<OID> is written as a directory
// holding the tablespace's files, carrying the tablespace's location
// (tarfile.TablespaceLocationKey): locations[OID] if given, else the
// link's target.
func tarDirExcept(w io.Writer, dir string, skip func(rel string) bool, locations map[uint32]string) error {
	tw := tar.NewWriter(w)
	err := walkDataDir(dir, func(rel, path string, info fs.FileInfo, location string) error {
		if skip != nil && info.Mode().IsRegular() && skip(rel) {
			return nil
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, pipes: nothing a data directory needs
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if location != "" {
			if oid, err := strconv.ParseUint(strings.TrimPrefix(rel, "pg_tblspc/"), 10, 32); err == nil && locations[uint32(oid)] != "" {
				location = locations[uint32(oid)]
			}
			hdr.PAXRecords = map[string]string{tarfile.TablespaceLocationKey: location}
			hdr.Format = tar.FormatPAX
		}
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

// walkDataDir calls fn for every file and directory under the data
// directory dir, in lexical order, with its path relative to dir (with
// slashes) and its path on disk. A tablespace's link pg_tblspc/<OID> is
// followed: fn sees it as the directory it links to, with location the
// link's target (absolute), then the tablespace's files below it; every
// other call has location "". A link pg_wal (initdb --waldir) is
// followed the same way. Other links are passed to fn as links.
func walkDataDir(dir string, fn func(rel, path string, info fs.FileInfo, location string) error) error {
	var walk func(root, prefix string) error
	walk = func(root, prefix string) error {
		return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, path)
			if err != nil || rel == "." {
				return err
			}
			rel = prefix + filepath.ToSlash(rel)
			if d.Type()&fs.ModeSymlink != 0 && (isTablespaceLink(rel) || rel == "pg_wal") {
				target, err := os.Readlink(path)
				if err != nil {
					return err
				}
				if !filepath.IsAbs(target) {
					target = filepath.Join(filepath.Dir(path), target)
				}
				info, err := os.Stat(path)
				if err != nil {
					return err
				}
				if !info.IsDir() {
					return fmt.Errorf("%s links to %s, not a directory", rel, target)
				}
				location := target
				if rel == "pg_wal" {
					location = ""
				}
				if err := fn(rel, path, info, location); err != nil {
					return err
				}
				return walk(target, rel+"/")
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return fn(rel, path, info, "")
		})
	}
	return walk(dir, "")
}

// isTablespaceLink tells whether rel, a path in a data directory, is
// where a tablespace's link is: pg_tblspc/<OID>.
func isTablespaceLink(rel string) bool {
	oid, ok := strings.CutPrefix(rel, "pg_tblspc/")
	if !ok {
		return false
	}
	_, err := strconv.ParseUint(oid, 10, 32)
	return err == nil
}
