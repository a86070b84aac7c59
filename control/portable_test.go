package control_test

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// releaseTarball returns $ZENITH_RELEASE_TARBALL, or builds one with
// scripts/release (HEAD as committed) and returns its path.
func releaseTarball(t *testing.T, root string) string {
	t.Helper()
	if p := os.Getenv("ZENITH_RELEASE_TARBALL"); p != "" {
		return p
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "release"))
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("scripts/release: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("scripts/release: %v", err)
	}
	// Its last line is the .sha256 file: "HASH  NAME.tar.gz".
	f := strings.Fields(string(out))
	if len(f) < 2 || !strings.HasSuffix(f[len(f)-1], ".tar.gz") {
		t.Fatalf("scripts/release printed %q, want the checksum line", out)
	}
	return filepath.Join(root, "dist", f[len(f)-1])
}

// extractBinary copies the zenith binary, and nothing else, out of the
// release tarball into dir, and checks that the tarball also holds the
// README and the sample config.
func extractBinary(t *testing.T, tarball, dir string) string {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	seen := map[string]bool{}
	bin := filepath.Join(dir, "zenith")
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[filepath.Base(h.Name)] = true
		if filepath.Base(h.Name) != "zenith" || h.Typeflag != tar.TypeReg {
			continue
		}
		out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"zenith", "README.md", "pageserver.toml.sample"} {
		if !seen[want] {
			t.Errorf("release tarball %s has no %s", tarball, want)
		}
	}
	return bin
}

// TestReleasedBinaryRunsAlone copies only the released binary into an
// empty directory and runs a user's first session with it: init, start,
// a compute, a write, a branch and a read from it. Nothing of the build
// can help: PATH holds only PostgreSQL's programs (no go, cc or make),
// the module cache is new and empty, and, as root, the
// checkout is covered by an empty directory in a private mount namespace
// (unshare), so neither walredo/pgext/zenith_walredo.so nor anything else
// of the tree is there to find. The page reads of the compute and the
// branch go through WAL redo, whose module must come out of the binary.
func TestReleasedBinaryRunsAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release (scripts/release)")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	binDir, err := os.MkdirTemp("", "zenith-release-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	// The postgres OS user loads the module from the cache in here.
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := extractBinary(t, releaseTarball(t, root), binDir)
	cache := filepath.Join(binDir, "cache")

	path := pgcluster.DefaultBinDir
	for _, tool := range []string{"go", "gcc", "cc", "make"} {
		if p, err := lookPathIn(tool, path); err == nil {
			t.Fatalf("%s is on the test's PATH %s (%s): the test would not show the binary needs no build tools", tool, path, p)
		}
	}
	opts := &zenithtest.Options{Bin: bin, Environ: []string{"PATH=" + path, "ZENITH_CACHE_DIR=" + cache}}
	if os.Geteuid() == 0 {
		empty := t.TempDir()
		opts.Wrap = []string{"/usr/bin/unshare", "--mount", "--", "/bin/sh", "-c",
			`/bin/mount --bind "$0" "$1" && shift && exec "$@"`, empty, root}
	} else {
		t.Log("NOT root: the checkout stays reachable (no private mount namespace); PATH and the cache are still isolated")
	}

	env := zenithtest.New(t, opts)
	if opts.Wrap != nil {
		// The namespace really hides the checkout from zenith.
		out, errOut, err := env.Run("pg", "list")
		if err != nil {
			t.Fatalf("zenith pg list: %v\n%s%s", err, out, errOut)
		}
		probe := exec.Command(opts.Wrap[0], append(opts.Wrap[1:], "/bin/ls", filepath.Join(root, "walredo"))...)
		if b, err := probe.CombinedOutput(); err == nil {
			t.Fatalf("the checkout is still visible inside the namespace: ls walredo printed %s", b)
		}
	}
	t.Logf("zenith version:\n%s", env.Zenith("version"))
	main := env.Postgres.CreateStart("main")
	conn := main.Connect()
	exec1(t, conn, "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 5000) g")
	lsn := queryString(t, conn, "SELECT pg_current_wal_lsn()::text")
	exec1(t, conn, "INSERT INTO t SELECT g, 'after' FROM generate_series(5001, 6000) g")
	env.Zenith("branch", "past", "main@"+lsn)
	past := env.Postgres.CreateStart("past")
	if got := count(t, past.Connect(), "t"); got != 5000 {
		t.Errorf("branch past at %s has %d rows, want 5000", lsn, got)
	}
	if got := count(t, conn, "t"); got != 6000 {
		t.Errorf("main has %d rows, want 6000", got)
	}
	entries, _ := filepath.Glob(filepath.Join(cache, "walredo", "*", "zenith_walredo.so"))
	if len(entries) != 1 {
		t.Errorf("module cache %s holds %v, want the one module the binary wrote", cache, entries)
	}
	if names, _ := filepath.Glob(filepath.Join(binDir, "*")); len(names) != 2 { // zenith, cache
		t.Errorf("binary directory holds %v, want only zenith and the cache", names)
	}
}

// lookPathIn finds an executable named name in the directories of path.
func lookPathIn(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}
