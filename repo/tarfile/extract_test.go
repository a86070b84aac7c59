package tarfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// tarOf builds a tar from entries.
func tarOf(t *testing.T, entries ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte{'x'}, int(h.Size)))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// headerOnly is a tar cut after one entry's header.
func headerOnly(t *testing.T, h *tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractDataDirTar(t *testing.T) {
	file := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o600}
	}
	dir := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o700} }

	good := t.TempDir()
	b := tarOf(t, dir("./"), dir("global"), file("global/pg_control", 8192), file("base/1/1259", 16384), file("./PG_VERSION", 3))
	if err := ExtractDataDir(bytes.NewReader(append(b, make([]byte, 10240)...)), good); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int64{"global/pg_control": 8192, "base/1/1259": 16384, "PG_VERSION": 3} {
		if info, err := os.Stat(filepath.Join(good, name)); err != nil || info.Size() != size {
			t.Errorf("%s: %v, want %d bytes", name, err, size)
		}
	}

	for what, tarball := range map[string][]byte{
		"absolute name":  tarOf(t, file("/etc/passwd", 1)),
		"dot-dot":        tarOf(t, file("base/../../x", 1)),
		"symlink":        tarOf(t, &tar.Header{Name: "pg_wal", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}),
		"hard link":      tarOf(t, file("a", 1), &tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}),
		"device":         tarOf(t, &tar.Header{Name: "null", Typeflag: tar.TypeChar}),
		"duplicate":      tarOf(t, file("a", 1), file("./a", 1)),
		"oversized file": headerOnly(t, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: MaxFileBytes + 1}),
		"not a tar":      []byte("hello, world"),
		"truncated":      tarOf(t, file("a", 4096))[:1024],
		"trailing junk":  append(tarOf(t, file("a", 1)), make([]byte, MaxTrailer+1024)...),
		"backslash name": tarOf(t, file(`base\1`, 1)),
	} {
		err := ExtractDataDir(bytes.NewReader(tarball), t.TempDir())
		if !errors.Is(err, ErrBadTar) {
			t.Errorf("%s: got %v, want ErrBadTar", what, err)
		}
	}
}

// Whatever an archive says, nothing is written outside the target.
func TestExtractDataDirStaysInside(t *testing.T) {
	for _, h := range []tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Size: 1},
		{Name: "base/../../evil", Typeflag: tar.TypeReg, Size: 1},
		{Name: "/evil", Typeflag: tar.TypeReg, Size: 1},
		{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../evil"},
	} {
		parent := t.TempDir()
		dst := filepath.Join(parent, "pgdata")
		if err := os.Mkdir(dst, 0o700); err != nil {
			t.Fatal(err)
		}
		err := ExtractDataDir(bytes.NewReader(tarOf(t, &h)), dst)
		if !errors.Is(err, ErrBadTar) {
			t.Errorf("%s: got %v, want ErrBadTar", h.Name, err)
		}
		if _, err := os.Lstat(filepath.Join(parent, "evil")); err == nil {
			t.Errorf("%s: a file was written outside the data directory", h.Name)
		}
	}
}

// TestExtractBasebackupTablespaces: a pg_tblspc/<OID> directory that
// carries a location becomes a link to the node's tablespace directory,
// its files land there; an in-place one stays a directory; ExtractDataDir
// and ExtractImport make both plain directories, ExtractImport returning
// the location; a location on anything else is refused.
func TestExtractBasebackupTablespaces(t *testing.T) {
	loc := map[string]string{TablespaceLocationKey: "/elsewhere/ts"}
	tarball := tarOf(t,
		&tar.Header{Name: "pg_tblspc/", Typeflag: tar.TypeDir, Mode: 0o700},
		&tar.Header{Name: "pg_tblspc/16384/", Typeflag: tar.TypeDir, Mode: 0o700, PAXRecords: loc},
		&tar.Header{Name: "pg_tblspc/16384/PG_15_202209061/5/16385", Typeflag: tar.TypeReg, Size: 8, Mode: 0o600},
		&tar.Header{Name: "pg_tblspc/16390/", Typeflag: tar.TypeDir, Mode: 0o700},
		&tar.Header{Name: "pg_tblspc/16390/PG_15_202209061/5/16391", Typeflag: tar.TypeReg, Size: 8, Mode: 0o600},
	)
	data, spaces := t.TempDir(), t.TempDir()
	if _, err := ExtractBasebackup(bytes.NewReader(tarball), data, spaces); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(data, "pg_tblspc/16384")); err != nil || target != filepath.Join(spaces, "16384") {
		t.Errorf("pg_tblspc/16384 links to %q (%v), want %s", target, err, filepath.Join(spaces, "16384"))
	}
	if _, err := os.Stat(filepath.Join(spaces, "16384/PG_15_202209061/5/16385")); err != nil {
		t.Errorf("the tablespace's file is not in the tablespace directory: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(data, "pg_tblspc/16390")); err != nil || !fi.IsDir() {
		t.Errorf("in-place tablespace pg_tblspc/16390: %v, want a directory", err)
	}

	plain := t.TempDir()
	if err := ExtractDataDir(bytes.NewReader(tarball), plain); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(plain, "pg_tblspc/16384")); err != nil || !fi.IsDir() {
		t.Errorf("ExtractDataDir: pg_tblspc/16384 is %v (%v), want a plain directory", fi.Mode(), err)
	}
	imported := t.TempDir()
	locations, err := ExtractImport(bytes.NewReader(tarball), imported)
	if err != nil {
		t.Fatal(err)
	}
	if len(locations) != 1 || locations[16384] != "/elsewhere/ts" {
		t.Errorf("ExtractImport: locations %v, want 16384 at /elsewhere/ts", locations)
	}
	if fi, err := os.Lstat(filepath.Join(imported, "pg_tblspc/16384/PG_15_202209061/5/16385")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("ExtractImport: the tablespace's file: %v", err)
	}

	for _, h := range []*tar.Header{
		{Name: "base/16384/", Typeflag: tar.TypeDir, PAXRecords: loc},
		{Name: "pg_tblspc/x/", Typeflag: tar.TypeDir, PAXRecords: loc},
		{Name: "pg_tblspc/16384", Typeflag: tar.TypeReg, PAXRecords: loc},
	} {
		_, err := ExtractBasebackup(bytes.NewReader(tarOf(t, h)), t.TempDir(), t.TempDir())
		if !errors.Is(err, ErrBadTar) {
			t.Errorf("%s (type %q) with a location: %v, want ErrBadTar", h.Name, h.Typeflag, err)
		}
	}
}
