package walredo

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// ExtensionFile is the file name of the redo module walredo/pgext builds.
const ExtensionFile = "zenith_walredo.so"

// factsFile is the file beside the module that says what it was built
// for (walredo/pgext/buildfacts.c.in).
const factsFile = "zenith_walredo.json"

// CacheDirEnv names the environment variable that overrides the
// directory the module is written to (ModuleCacheDir).
const CacheDirEnv = "ZENITH_CACHE_DIR"

// embedded holds what scripts/build copies into walredo/embedded: the
// module and its build facts, or only the committed README when the
// binary was built without them.
//
//go:embed embedded
var embedded embed.FS

// ErrNoModule is returned when the binary carries no redo module and no
// path to one is configured.
var ErrNoModule = errors.New("this binary was built without the WAL redo module: run scripts/build " +
	"(or set walredo_module in pageserver.toml to a zenith_walredo.so built with make -C walredo/pgext)")

// BuildFacts are the PostgreSQL version and build options a module was
// compiled against: the values its PG_MODULE_MAGIC block records
// (Pg_magic_struct in fmgr.h), which PostgreSQL compares with its own when
// it loads the module, and `pg_config --version`.
type BuildFacts struct {
	PGVersion    string `json:"pg_version"`
	VersionNum   int    `json:"version_num"`
	FuncMaxArgs  int    `json:"func_max_args"`
	IndexMaxKeys int    `json:"index_max_keys"`
	NameDataLen  int    `json:"namedatalen"`
	Float8ByVal  int    `json:"float8_byval"`
	ABIExtra     string `json:"abi_extra"`
}

// Major is the PostgreSQL major version, e.g. 15 (0 when unknown).
func (f BuildFacts) Major() int { return f.VersionNum / 10000 }

// String describes the facts for a person.
func (f BuildFacts) String() string {
	if f.VersionNum == 0 {
		return "an unknown PostgreSQL version"
	}
	byval := "by value"
	if f.Float8ByVal == 0 {
		byval = "by reference"
	}
	return fmt.Sprintf("%s (FUNC_MAX_ARGS %d, INDEX_MAX_KEYS %d, NAMEDATALEN %d, float8 %s, ABI %q)",
		f.PGVersion, f.FuncMaxArgs, f.IndexMaxKeys, f.NameDataLen, byval, f.ABIExtra)
}

// Module is a build of the redo module.
type Module struct {
	// Data is the shared library.
	Data []byte
	// Build is what it was built for; zero when a configured module has no
	// zenith_walredo.json beside it.
	Build BuildFacts
	// Source says where it came from: "embedded" or its path.
	Source string
}

// EmbeddedModule returns the module built into this binary, or
// ErrNoModule.
func EmbeddedModule() (*Module, error) {
	data, err := embedded.ReadFile("embedded/" + ExtensionFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoModule
	}
	if err != nil {
		return nil, fmt.Errorf("embedded WAL redo module: %w", err)
	}
	m := &Module{Data: data, Source: "embedded"}
	facts, err := embedded.ReadFile("embedded/" + factsFile)
	if err != nil {
		return nil, fmt.Errorf("embedded WAL redo module: %w (scripts/build embeds it with the module)", err)
	}
	if err := json.Unmarshal(facts, &m.Build); err != nil {
		return nil, fmt.Errorf("embedded WAL redo module: %s: %w", factsFile, err)
	}
	return m, nil
}

// ReadModule reads a module from path, and its build facts from
// zenith_walredo.json beside it when there is one.
func ReadModule(path string) (*Module, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the WAL redo module: %w", err)
	}
	m := &Module{Data: data, Source: path}
	facts, err := os.ReadFile(filepath.Join(filepath.Dir(path), factsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read the WAL redo module's build facts: %w", err)
	default:
		if err := json.Unmarshal(facts, &m.Build); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(filepath.Dir(path), factsFile), err)
		}
	}
	return m, nil
}

// FindModule returns the module at path, or the embedded one when path is
// empty.
func FindModule(path string) (*Module, error) {
	if path != "" {
		return ReadModule(path)
	}
	return EmbeddedModule()
}

// Hash is the SHA-256 of the module, in hex.
func (m *Module) Hash() string {
	sum := sha256.Sum256(m.Data)
	return hex.EncodeToString(sum[:])
}

// ModuleCacheDir is the directory modules are written to: $ZENITH_CACHE_DIR,
// or /var/cache/zenith when running as root (its parents are searchable by
// the postgres OS user, unlike root's home), or the user's cache directory
// (~/.cache/zenith), where PostgreSQL runs as that same user.
func ModuleCacheDir() (string, error) {
	if d := os.Getenv(CacheDirEnv); d != "" {
		return filepath.Abs(d)
	}
	if os.Geteuid() == 0 {
		return "/var/cache/zenith", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the WAL redo module: %w (set %s)", err, CacheDirEnv)
	}
	return filepath.Join(d, "zenith"), nil
}

// Install writes the module to cacheDir/walredo/HASH/zenith_walredo.so,
// unless it is there already, and returns that directory, for
// dynamic_library_path. Processes that install it at once each write a
// temporary file and rename it into place, so a reader never sees a part
// of it; a file there with other contents (damaged) is replaced the same
// way, which leaves a running process's mapping alone. Everything is
// readable by all, so PostgreSQL running as user u (when zenith runs as
// root) can load it; Install checks that u can reach it.
func (m *Module) Install(cacheDir string, u *pgcluster.OSUser) (string, error) {
	dir := filepath.Join(cacheDir, "walredo", m.Hash()[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install the WAL redo module: %w", err)
	}
	for p := dir; p != filepath.Dir(cacheDir); p = filepath.Dir(p) {
		// MkdirAll's modes are cut by the umask; the postgres user needs x.
		if err := chmodIfOwned(p, 0o755); err != nil {
			return "", fmt.Errorf("install the WAL redo module: %w", err)
		}
	}
	path := filepath.Join(dir, ExtensionFile)
	if err := m.write(path); err != nil {
		return "", fmt.Errorf("install the WAL redo module: %w", err)
	}
	if err := pgcluster.CheckReachable(path, u); err != nil {
		return "", fmt.Errorf("install the WAL redo module: %w (or set %s)", err, CacheDirEnv)
	}
	return dir, nil
}

// write puts the module at path unless an identical copy is there.
func (m *Module) write(path string) error {
	if old, err := os.ReadFile(path); err == nil && sha256.Sum256(old) == sha256.Sum256(m.Data) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+ExtensionFile+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if _, err := f.Write(m.Data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// chmodIfOwned sets dir's mode when this process owns it (a shared
// ZENITH_CACHE_DIR made by someone else is left as it is).
func chmodIfOwned(dir string, mode os.FileMode) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st.Mode().Perm() == mode || !ownedByMe(st) {
		return nil
	}
	return os.Chmod(dir, mode)
}

// IncompatibleModuleError says that the PostgreSQL found cannot load the
// module: another major version, or other build options.
type IncompatibleModuleError struct {
	// Module is what the module was built for.
	Module BuildFacts
	// Source is where the module came from ("embedded" or a path).
	Source string
	// BinDir and Server are the PostgreSQL found and its version line.
	BinDir, Server string
	// Detail is PostgreSQL's own complaint, when it tried to load it.
	Detail string
}

// Error names both versions and what to do.
func (e *IncompatibleModuleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the WAL redo module (%s) was built for %s, but %s is %s",
		e.Source, e.Module, filepath.Join(e.BinDir, "postgres"), e.Server)
	if e.Detail != "" {
		fmt.Fprintf(&b, ", which refuses it: %s", e.Detail)
	}
	if m := e.Module.Major(); m != 0 {
		fmt.Fprintf(&b, "; use PostgreSQL %d's programs (pg_bin_dir, --pg-bin), or rebuild zenith against this PostgreSQL with scripts/build", m)
	} else {
		b.WriteString("; rebuild the module against this PostgreSQL with scripts/build")
	}
	return b.String()
}

// checkMajor fails with an IncompatibleModuleError when the module's
// known major version is not the server's.
func (m *Module) checkMajor(binDir string, v pgcluster.ServerVersion) error {
	if major := m.Build.Major(); major != 0 && major != v.Major {
		return &IncompatibleModuleError{Module: m.Build, Source: m.Source, BinDir: binDir, Server: v.Text}
	}
	return nil
}

// ownedByMe reports whether this process's user owns the file.
func ownedByMe(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == os.Geteuid()
}
