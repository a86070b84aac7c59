package pageserver

import (
	_ "embed"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/walredo"
)

// ConfigFileName is the name of the page server's config file in its
// working directory.
const ConfigFileName = "pageserver.toml"

// SampleConfig is a commented config file with every setting at its
// default, as `zenith init` writes it.
//
//go:embed pageserver.toml.sample
var SampleConfig string

// Config is the page server's configuration (pageserver.toml).
type Config struct {
	// ListenPG is the address of the page service (libpq protocol).
	ListenPG string `toml:"listen_pg"`
	// ListenHTTP is the address of the HTTP API and /metrics.
	ListenHTTP string `toml:"listen_http"`
	// PGBinDir holds PostgreSQL 15's programs (empty: search for them).
	PGBinDir string `toml:"pg_bin_dir"`

	// WaitLSNTimeout bounds how long a request for an LSN not yet ingested
	// waits for it.
	WaitLSNTimeout tomlconf.Duration `toml:"wait_lsn_timeout"`
	// CheckpointDistance is how many bytes of WAL the in-memory layer takes
	// before it is frozen and flushed to a delta layer file.
	CheckpointDistance int64 `toml:"checkpoint_distance"`
	// CheckpointTimeout flushes the in-memory layer at least this often.
	CheckpointTimeout tomlconf.Duration `toml:"checkpoint_timeout"`
	// CompactionPeriod is how often background compaction runs.
	CompactionPeriod tomlconf.Duration `toml:"compaction_period"`
	// GCPeriod is how often background GC runs.
	GCPeriod tomlconf.Duration `toml:"gc_period"`
	// GCHorizon is how many bytes of WAL history every timeline keeps.
	GCHorizon int64 `toml:"gc_horizon"`
	// PITRInterval is how much time of history every timeline keeps.
	PITRInterval tomlconf.Duration `toml:"pitr_interval"`
	// RedoProcesses is the size of each tenant's WAL redo process pool.
	RedoProcesses int `toml:"redo_processes"`
	// WalredoIdleTimeout retires a WAL redo process no request used for
	// that long (each holds a backend's memory); 0 keeps them.
	WalredoIdleTimeout tomlconf.Duration `toml:"walredo_idle_timeout"`
	// PageCacheSize is the memory, in bytes, for reconstructed pages;
	// BlockCacheSize for uncompressed blocks of layer files;
	// InMemoryLayerLimit for the in-memory layers of every timeline
	// together (see repo.Config for what each does when full).
	PageCacheSize      int64 `toml:"page_cache_size"`
	BlockCacheSize     int64 `toml:"block_cache_size"`
	InMemoryLayerLimit int64 `toml:"in_memory_layer_limit"`
	// MaxOpenLayerFiles is how many layer files may be open at once, each
	// a file descriptor.
	MaxOpenLayerFiles int `toml:"max_open_layer_files"`
	// StallThreshold is how long a timeline's layer flush or WAL store
	// write or fsync may be in progress before the timeline is reported
	// stalled (a disk that does not answer).
	StallThreshold tomlconf.Duration `toml:"stall_threshold"`
	// FS is the file system under the repository and the WAL stores
	// (nil: the operating system's). It is not in the file: tests set it
	// to inject faults.
	FS vfs.FS `toml:"-"`
	// MemoryLimit is the soft limit, in bytes, of the memory the page
	// server's Go runtime holds (heap, stacks, its own): the collector
	// runs as often as it must to stay below it. 0 derives it from the
	// bounded caches (see DerivedMemoryLimit); -1 sets none, and the heap
	// then swings up to twice what is live. GOMEMLIMIT in the environment
	// overrides it.
	MemoryLimit int64 `toml:"memory_limit"`
	// WalredoModule is the path of a WAL redo module to use instead of
	// the one built into the binary (empty: built in).
	WalredoModule string `toml:"walredo_module"`

	// Log is "console" (for a person) or "json" (for a daemon's log file).
	Log string `toml:"log_format"`

	// AuthPublicKey is the path of the PEM ed25519 public key that signs
	// the tokens this server accepts; empty: no auth, every client is
	// trusted.
	AuthPublicKey string `toml:"auth_public_key"`
	// TLSCert and TLSKey are the PEM certificate and key of both
	// listeners; empty: no TLS.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`

	// Client is what the server presents to the safekeepers it streams
	// from: a token (from ZENITH_AUTH_TOKEN, never from the file) and the
	// CA of their certificates (tls_ca).
	Client auth.ClientOptions `toml:"-"`
	// TLSCA is the PEM CA certificate that the safekeepers' certificates
	// are checked against; empty: connect without TLS.
	TLSCA string `toml:"tls_ca"`

	// LayerDiskBudget bounds the bytes of layer files on the local disk,
	// with remote storage: past it the least recently read layers that
	// are uploaded are evicted, and fetched again when a read needs them.
	// 0: no bound.
	LayerDiskBudget int64 `toml:"layer_disk_budget"`

	// RemoteStorage is where layer files and timeline indexes are
	// uploaded, and tenants attached from (empty URL: nowhere).
	RemoteStorage remote.Config `toml:"remote_storage"`
}

// DefaultConfig is the configuration of a page server with no config file.
func DefaultConfig() Config {
	rc := repo.DefaultConfig("")
	return Config{
		ListenPG:           "127.0.0.1:64000",
		ListenHTTP:         "127.0.0.1:9898",
		WaitLSNTimeout:     tomlconf.Duration(60 * time.Second),
		CheckpointDistance: 256 << 20,
		CheckpointTimeout:  tomlconf.Duration(10 * time.Minute),
		CompactionPeriod:   tomlconf.Duration(20 * time.Second),
		GCPeriod:           tomlconf.Duration(time.Hour),
		GCHorizon:          64 << 20,
		PITRInterval:       tomlconf.Duration(7 * 24 * time.Hour),
		RedoProcesses:      2,
		WalredoIdleTimeout: tomlconf.Duration(walredo.DefaultConfig().IdleTimeout),
		PageCacheSize:      rc.PageCacheSize,
		BlockCacheSize:     rc.BlockCacheSize,
		InMemoryLayerLimit: rc.InMemoryLayerLimit,
		MaxOpenLayerFiles:  rc.MaxOpenLayerFiles,
		StallThreshold:     tomlconf.Duration(DefaultStallThreshold),
		Log:                "json",
	}
}

// LoadConfig reads a config file over the defaults. Unknown settings are
// errors, so a misspelt one is never silently ignored.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read page server config: %w", err)
	}
	if err := tomlconf.DecodeStrict(path, b, &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks every setting and names the first bad one.
func (c *Config) Validate() error {
	for name, addr := range map[string]string{"listen_pg": c.ListenPG, "listen_http": c.ListenHTTP} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s = %q: want host:port (%v)", name, addr, err)
		}
	}
	switch {
	case c.WaitLSNTimeout <= 0:
		return fmt.Errorf("wait_lsn_timeout must be positive")
	case c.CheckpointDistance < 1<<20:
		return fmt.Errorf("checkpoint_distance = %d: want at least 1 MiB", c.CheckpointDistance)
	case c.CheckpointTimeout <= 0:
		return fmt.Errorf("checkpoint_timeout must be positive")
	case c.CompactionPeriod <= 0:
		return fmt.Errorf("compaction_period must be positive")
	case c.GCPeriod <= 0:
		return fmt.Errorf("gc_period must be positive")
	case c.GCHorizon < 0:
		return fmt.Errorf("gc_horizon must not be negative")
	case c.PITRInterval < 0:
		return fmt.Errorf("pitr_interval must not be negative")
	case c.MemoryLimit < -1 || c.MemoryLimit > 0 && c.MemoryLimit < 64<<20:
		return fmt.Errorf("memory_limit = %d: want at least 64 MiB (67108864), 0 (derived) or -1 (none)", c.MemoryLimit)
	case c.LayerDiskBudget < 0:
		return fmt.Errorf("layer_disk_budget = %d: must not be negative", c.LayerDiskBudget)
	case c.RedoProcesses < 1 || c.RedoProcesses > 64:
		return fmt.Errorf("redo_processes = %d: want 1 to 64", c.RedoProcesses)
	case c.WalredoIdleTimeout < 0:
		return fmt.Errorf("walredo_idle_timeout = %v: want 0 (never retire) or more", time.Duration(c.WalredoIdleTimeout))
	case c.PageCacheSize < 0:
		return fmt.Errorf("page_cache_size = %d: must not be negative", c.PageCacheSize)
	case c.BlockCacheSize < 0:
		return fmt.Errorf("block_cache_size = %d: must not be negative", c.BlockCacheSize)
	case c.InMemoryLayerLimit < 1<<20:
		return fmt.Errorf("in_memory_layer_limit = %d: want at least 1 MiB", c.InMemoryLayerLimit)
	case c.StallThreshold <= 0:
		return fmt.Errorf("stall_threshold = %v: must be positive", time.Duration(c.StallThreshold))
	case c.MaxOpenLayerFiles < 1:
		return fmt.Errorf("max_open_layer_files = %d: want at least 1", c.MaxOpenLayerFiles)
	case c.Log != "console" && c.Log != "json":
		return fmt.Errorf("log_format = %q: want \"console\" or \"json\"", c.Log)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("tls_cert and tls_key: set both or neither")
	}
	if err := c.RemoteStorage.Validate(); err != nil {
		return fmt.Errorf("remote_storage.url: %w", err)
	}
	return nil
}
