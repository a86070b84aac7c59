package control

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/zenithdb/zenith/repo/tarfile"
)

// A tar-format base backup (pg_basebackup -Ft) is a directory of
// archives: base.tar holds the data directory, pg_wal.tar its WAL (with
// -X stream; with -X fetch the WAL is in base.tar), and <OID>.tar each
// tablespace. The client compresses them when asked (-z, or --compress
// with gzip, lz4 or zstd), adding .gz, .lz4 or .zst. zenith import
// unpacks one into a plain copy and recovers it as a -Fp backup.

// tarDecompressors are the archive suffixes pg_basebackup writes, with
// what reads each.
var tarDecompressors = []struct {
	suffix string
	open   func(io.Reader) (io.Reader, error)
}{
	{".tar", func(r io.Reader) (io.Reader, error) { return r, nil }},
	{".tar.gz", func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
	{".tar.lz4", func(r io.Reader) (io.Reader, error) { return lz4.NewReader(r), nil }},
	{".tar.zst", func(r io.Reader) (io.Reader, error) {
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}},
}

// tablespaceArchive matches a tablespace's archive in a tar-format backup.
var tablespaceArchive = regexp.MustCompile(`^[0-9]+\.tar(\.gz|\.lz4|\.zst)?$`)

// archive is one archive of a tar-format backup.
type archive struct {
	path string
	open func(io.Reader) (io.Reader, error) // its decompressor
}

// tarArchive returns dir's archive named name (base or pg_wal), with
// whichever suffix; its path is "" if dir has none.
func tarArchive(dir, name string) archive {
	for _, d := range tarDecompressors {
		p := filepath.Join(dir, name+d.suffix)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return archive{p, d.open}
		}
	}
	return archive{}
}

// isTarBackup tells a tar-format base backup's directory (a base
// archive, no PG_VERSION) from a data directory.
func isTarBackup(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return false
	}
	return tarArchive(dir, "base").path != ""
}

// extractTarBackup unpacks the tar-format backup in dir into dst, which
// must not exist: the base archive into dst, the WAL archive (if any)
// into dst/pg_wal. prog counts the archives' bytes as they are read.
// Tablespace archives are refused: zenith import takes the default
// tablespaces only.
func extractTarBackup(dir, dst string, prog io.Writer) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrImportSource, dir, err)
	}
	for _, e := range entries {
		if tablespaceArchive.MatchString(e.Name()) {
			return fmt.Errorf("%w %s: %s is a tablespace's archive; zenith import supports pg_default and pg_global only (move the tablespace's tables there first: ALTER TABLE ... SET TABLESPACE pg_default)",
				ErrImportSource, dir, e.Name())
		}
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	if err := extractArchive(tarArchive(dir, "base"), dst, prog); err != nil {
		return err
	}
	wal := tarArchive(dir, "pg_wal")
	if wal.path == "" {
		return nil
	}
	walDir := filepath.Join(dst, "pg_wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return err
	}
	return extractArchive(wal, walDir, prog)
}

// extractArchive unpacks the (perhaps compressed) archive a into dir.
func extractArchive(a archive, dir string, prog io.Writer) error {
	path := a.path
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrImportSource, err)
	}
	defer f.Close()
	r, err := a.open(io.TeeReader(f, prog))
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrImportSource, path, err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	if err := tarfile.ExtractDataDir(r, dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, tarfile.ErrBadTar) {
			return fmt.Errorf("%w %s: %v", ErrImportSource, path, err)
		}
		return fmt.Errorf("%w %s: %v (is it damaged or cut short?)", ErrImportSource, path, err)
	}
	return nil
}

// archivesBytes is the size of the backup's base and WAL archives.
func archivesBytes(dir string) int64 {
	var n int64
	for _, name := range []string{"base", "pg_wal"} {
		if p := tarArchive(dir, name).path; p != "" {
			if st, err := os.Stat(p); err == nil {
				n += st.Size()
			}
		}
	}
	return n
}
