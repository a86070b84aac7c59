package walredo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestModuleInstallConcurrent installs one module from many goroutines
// at once, as several page servers starting together do: every one gets
// the same directory, the file is whole and readable by all, and no
// temporary file is left.
func TestModuleInstallConcurrent(t *testing.T) {
	data := bytes.Repeat([]byte("module"), 100_000)
	m := &Module{Data: data, Source: "test"}
	cache := t.TempDir()
	const n = 8
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = m.Install(cache, nil)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Install %d: %v", i, errs[i])
		}
		if dirs[i] != dirs[0] {
			t.Fatalf("Install %d returned %s, Install 0 %s", i, dirs[i], dirs[0])
		}
	}
	if want := filepath.Join(cache, "walredo", m.Hash()[:16]); dirs[0] != want {
		t.Errorf("Install returned %s, want %s", dirs[0], want)
	}
	path := filepath.Join(dirs[0], ExtensionFile)
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("installed module: %d bytes, err %v; want the %d bytes installed", len(got), err, len(data))
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("installed module mode %v, want 0644", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dirs[0])
	if len(entries) != 1 {
		t.Errorf("cache directory holds %d files, want only the module", len(entries))
	}
}

// TestModuleInstallReplacesDamagedCopy overwrites a cached module whose
// bytes are not the module's (a torn copy, say) instead of loading it.
func TestModuleInstallReplacesDamagedCopy(t *testing.T) {
	m := &Module{Data: []byte("the real module"), Source: "test"}
	cache := t.TempDir()
	dir, err := m.Install(cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ExtensionFile)
	if err := os.WriteFile(path, []byte("the real mod"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Install(cache, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "the real module" {
		t.Errorf("after Install the cache holds %q, want %q", got, "the real module")
	}
}

// TestEmbeddedModule checks what this test binary carries: the module
// and build facts scripts/build embeds (scripts/test always builds
// first), or, in a fresh clone, the error that says how to get them.
func TestEmbeddedModule(t *testing.T) {
	m, err := EmbeddedModule()
	if errors.Is(err, ErrNoModule) {
		if !strings.Contains(err.Error(), "run scripts/build") {
			t.Errorf("error %q does not say to run scripts/build", err)
		}
		t.Skip("built without the module (go test without scripts/build): ", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Build.Major(); got != 15 {
		t.Errorf("embedded module built for major %d (%s), want 15", got, m.Build)
	}
	if !bytes.HasPrefix(m.Data, []byte("\x7fELF")) {
		t.Errorf("embedded module is not an ELF file")
	}
}

// incompatibleOpen opens a Manager in a new scratch directory with the
// module at path and returns the IncompatibleModuleError it must fail with.
func incompatibleOpen(t *testing.T, path string) *IncompatibleModuleError {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = testDir
	cfg.Extension = path
	cfg.CacheDir = filepath.Join(filepath.Dir(testDir), "cache")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Open(ctx, cfg, zerolog.Nop())
	if err == nil {
		m.Close()
		t.Fatalf("Open with module %s succeeded, want an IncompatibleModuleError", path)
	}
	var ie *IncompatibleModuleError
	if !errors.As(err, &ie) {
		t.Fatalf("Open: %v, want an IncompatibleModuleError", err)
	}
	t.Logf("Open: %v", err)
	return ie
}

// TestOpenRefusesModuleOfAnotherMajorVersion gives Open a module whose
// build facts say PostgreSQL 16: the error names both versions before
// PostgreSQL is ever asked to load it.
func TestOpenRefusesModuleOfAnotherMajorVersion(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(testExtension)
	if err != nil {
		t.Fatal(err)
	}
	facts := BuildFacts{PGVersion: "PostgreSQL 16.4", VersionNum: 160004, FuncMaxArgs: 100, IndexMaxKeys: 32, NameDataLen: 64, Float8ByVal: 1, ABIExtra: "PostgreSQL"}
	b, _ := json.Marshal(facts)
	path := filepath.Join(dir, ExtensionFile)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, factsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ie := incompatibleOpen(t, path)
	msg := ie.Error()
	for _, want := range []string{"built for PostgreSQL 16.4", "(PostgreSQL) 15.", "use PostgreSQL 16's programs"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}

// TestOpenRefusesLibraryPostgreSQLRejects gives Open a shared library
// that is no PostgreSQL module at all (zlib): PostgreSQL's own magic-block
// check refuses it, and the error carries its words.
func TestOpenRefusesLibraryPostgreSQLRejects(t *testing.T) {
	const zlib = "/usr/lib/x86_64-linux-gnu/libz.so.1"
	if _, err := os.Stat(zlib); err != nil {
		t.Skipf("no %s to load: %v", zlib, err)
	}
	// Opened once with the real module first, so the template exists and
	// the check is the LOAD of a module new to it.
	openTestManager(t, nil)
	ie := incompatibleOpen(t, zlib)
	if !strings.Contains(ie.Detail, "missing magic block") {
		t.Errorf("Detail %q, want PostgreSQL's 'missing magic block'", ie.Detail)
	}
	if !strings.Contains(ie.Error(), "an unknown PostgreSQL version") {
		t.Errorf("error %q does not say the library's version is unknown", ie.Error())
	}
	// The good module still opens afterwards.
	openTestManager(t, nil)
}

// TestTemplateFromCache opens two managers in new directories with one
// cache directory: the first initdbs the template and keeps a copy in
// the cache, the second copies it (the same pg_control, whose system
// identifier every initdb draws anew) and redoes with it.
func TestTemplateFromCache(t *testing.T) {
	base, err := os.MkdirTemp("", "zenith-walredo-cache-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // the postgres OS user must reach the slots
		t.Fatal(err)
	}
	cache := filepath.Join(base, "cache")
	open := func(name string) (*Manager, string) {
		m := openTestManager(t, func(c *Config) {
			c.Dir = filepath.Join(base, name)
			c.CacheDir = cache
		})
		return m, filepath.Join(base, name, "template", "global", "pg_control")
	}
	_, first := open("first")
	cached, err := filepath.Glob(filepath.Join(cache, "walredo", "*", "template-*", "global", "pg_control"))
	if err != nil || len(cached) != 1 {
		t.Fatalf("cached templates after the first open: %v (%v), want one", cached, err)
	}
	m, second := open("second")
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(first), read(cached[0])) {
		t.Errorf("the cached template's pg_control differs from the template it was kept from")
	}
	if !bytes.Equal(read(second), read(cached[0])) {
		t.Errorf("the second template's pg_control differs from the cached one's: it was initdb'd, not copied")
	}
	image := testPage(0x5A)
	got, err := m.Redo(context.Background(), tenant, targetTag, nil, []Record{{LSN: 0x1000028, WAL: fpiRecord(image, targetTag)}})
	if err != nil {
		t.Fatalf("Redo with the copied template: %v", err)
	}
	setLSN(image, 0x1000028)
	if !bytes.Equal(got, image) {
		t.Errorf("Redo with the copied template: page differs at byte %d", firstDiff(got, image))
	}
}
