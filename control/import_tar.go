package control

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

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
var tablespaceArchive = regexp.MustCompile(`^([0-9]+)\.tar(\.gz|\.lz4|\.zst)?$`)

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
// into dst/pg_wal, and each tablespace's archive <OID>.tar into
// tablespacesDir/<OID>. prog counts the archives' bytes as they are read.
//
// The base archive of a backup with tablespaces holds tablespace_map, a
// line "<OID> <location>" for each, from which recovery makes the links
// pg_tblspc/<OID>: it is rewritten to name the unpacked copies, and the
// original locations are returned, by OID.
func extractTarBackup(dir, dst, tablespacesDir string, prog io.Writer) (map[uint32]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrImportSource, dir, err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return nil, err
	}
	if err := extractArchive(tarArchive(dir, "base"), dst, prog); err != nil {
		return nil, err
	}
	locations, err := readTablespaceMap(filepath.Join(dst, "tablespace_map"))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrImportSource, dir, err)
	}
	copies := map[uint32]string{}
	for _, e := range entries {
		m := tablespaceArchive.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		oid64, err := strconv.ParseUint(m[1], 10, 32)
		oid := uint32(oid64)
		if _, listed := locations[oid]; err != nil || !listed {
			return nil, fmt.Errorf("%w %s: %s is the archive of a tablespace the base archive's tablespace_map does not list", ErrImportSource, dir, e.Name())
		}
		if _, dup := copies[oid]; dup {
			return nil, fmt.Errorf("%w %s: two archives of tablespace %d", ErrImportSource, dir, oid)
		}
		copies[oid] = filepath.Join(tablespacesDir, m[1])
		if err := os.MkdirAll(copies[oid], 0o700); err != nil {
			return nil, err
		}
		if err := extractArchive(archive{filepath.Join(dir, e.Name()), tarDecompressor(e.Name())}, copies[oid], prog); err != nil {
			return nil, err
		}
	}
	for oid := range locations {
		if _, ok := copies[oid]; !ok {
			return nil, fmt.Errorf("%w %s: tablespace %d (at %s on the server) has no archive %d.tar here", ErrImportSource, dir, oid, locations[oid], oid)
		}
	}
	if len(copies) > 0 {
		if err := writeTablespaceMap(filepath.Join(dst, "tablespace_map"), copies); err != nil {
			return nil, err
		}
	}
	wal := tarArchive(dir, "pg_wal")
	if wal.path == "" {
		return locations, nil
	}
	walDir := filepath.Join(dst, "pg_wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, err
	}
	return locations, extractArchive(wal, walDir, prog)
}

// tarDecompressor is what reads the archive called name.
func tarDecompressor(name string) func(io.Reader) (io.Reader, error) {
	for _, d := range slices.Backward(tarDecompressors) {
		if strings.HasSuffix(name, d.suffix) {
			return d.open
		}
	}
	return nil
}

// readTablespaceMap reads a base backup's tablespace_map: a line
// "<OID> <location>" per tablespace, where PostgreSQL escapes a backslash,
// newline or carriage return of the location with a backslash. No file is
// no tablespaces.
func readTablespaceMap(path string) (map[uint32]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	locations := map[uint32]string{}
	var line []byte
	escaped := false
	for _, c := range b {
		switch {
		case escaped:
			line, escaped = append(line, c), false
			continue
		case c == '\\':
			escaped = true
			continue
		case c != '\n' && c != '\r':
			line = append(line, c)
			continue
		}
		if len(line) == 0 {
			continue
		}
		oid, loc, ok := strings.Cut(string(line), " ")
		n, err := strconv.ParseUint(oid, 10, 32)
		if !ok || err != nil || n == 0 || !filepath.IsAbs(loc) {
			return nil, fmt.Errorf("tablespace_map: bad line %q", line[:min(len(line), 100)])
		}
		locations[uint32(n)] = loc
		line = line[:0]
	}
	if len(line) > 0 || escaped {
		return nil, fmt.Errorf("tablespace_map: the last line does not end")
	}
	return locations, nil
}

// writeTablespaceMap writes a tablespace_map naming locations, escaped as
// PostgreSQL escapes them.
func writeTablespaceMap(path string, locations map[uint32]string) error {
	var b strings.Builder
	for _, oid := range slices.Sorted(maps.Keys(locations)) {
		fmt.Fprintf(&b, "%d ", oid)
		for _, c := range []byte(locations[oid]) {
			if c == '\\' || c == '\n' || c == '\r' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
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

// archivesBytes is the size of the backup's archives: base, WAL and
// tablespaces.
func archivesBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		name := e.Name()
		if tarArchive(dir, "base").path == filepath.Join(dir, name) || tarArchive(dir, "pg_wal").path == filepath.Join(dir, name) || tablespaceArchive.MatchString(name) {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				n += info.Size()
			}
		}
	}
	return n
}
