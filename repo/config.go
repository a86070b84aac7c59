package repo

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Config configures a Repository.
type Config struct {
	// Workdir is the directory holding tenants/.
	Workdir string
	// FS is the file system; nil means the operating system's.
	FS vfs.FS
	// Redo replays records onto base images; required.
	Redo Redo
	// Logger receives the repository's log, with tenant and timeline
	// fields added.
	Logger zerolog.Logger
	// PageCacheSize is the memory, in bytes, for reconstructed pages.
	PageCacheSize int64
	// BlockCacheSize is the memory, in bytes, for blocks of layer files.
	BlockCacheSize int64
	// InMemoryLayerLimit is the memory, in bytes, that the in-memory
	// layers of all timelines may take together, open and frozen. When
	// the open layers reach half of it, the writing timeline freezes its
	// open layer; when the total reaches it, the writer flushes its
	// frozen layers itself, which slows ingest to the speed of the disk.
	// The default (32 MiB, so layers of 16 MiB) keeps the heap's swing
	// from each fill-freeze-flush cycle small next to the caches: the
	// memory of a flushed layer is garbage the Go heap must hold until
	// the next collection.
	InMemoryLayerLimit int64
	// MaxOpenLayerFiles is how many layer files may be open at once
	// (each holds a file descriptor); past it, the least recently read
	// file is closed, and reopened when it is read again. More may be
	// open for a moment only while more than this many are being read at
	// once. The default (512) leaves room, under the soft limit of 1024
	// descriptors that most systems start a process with, for the page
	// service's connections, the WAL store and the redo processes' pipes.
	// Zero means the default.
	MaxOpenLayerFiles int
	// FlushInterval is how often in-memory layers are checked for age and
	// frozen layers flushed; size-triggered flushes happen at once. Zero
	// disables background flushing: only Flush writes layer files.
	FlushInterval time.Duration
	// CompactionInterval and GCInterval are the periods of the background
	// compaction and garbage collection of loaded timelines; zero disables
	// the loop (Compact and GC can always be called directly).
	CompactionInterval time.Duration
	GCInterval         time.Duration
	// Remote is the remote storage that layer files and timeline indexes
	// are uploaded to, that AttachTenant restores tenants from, and that
	// layer files missing from the local disk are fetched from at their
	// first read; nil: none.
	Remote remote.Storage
	// LayerDiskBudget bounds the bytes of layer files on the local disk
	// (with Remote): past it, the least recently read layers that remote
	// storage holds are evicted after each upload round (see Evict). 0:
	// no bound.
	LayerDiskBudget int64
	// UploadInterval is how often timelines are uploaded to Remote, in
	// addition to after every flush, compaction and GC.
	UploadInterval time.Duration
	// UploadTimeout bounds the last upload at Close.
	UploadTimeout time.Duration
	// TenantFiles names files of a tenant's directory, besides its
	// settings, that are uploaded and restored with it (the page server's
	// branch names).
	TenantFiles []string
	// Now is the clock (for freezing by age and the PITR window); nil
	// means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults for a repository in workdir; the
// caller sets Redo.
func DefaultConfig(workdir string) Config {
	return Config{
		Workdir:            workdir,
		FS:                 vfs.Default,
		Logger:             zerolog.Nop(),
		PageCacheSize:      64 << 20,
		BlockCacheSize:     128 << 20,
		InMemoryLayerLimit: 32 << 20,
		MaxOpenLayerFiles:  512,
		FlushInterval:      time.Second,
		CompactionInterval: 20 * time.Second,
		GCInterval:         100 * time.Second,
		UploadInterval:     10 * time.Second,
		UploadTimeout:      30 * time.Second,
		Now:                time.Now,
	}
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Workdir == "":
		return errors.New("repository config: Workdir is empty")
	case c.Redo == nil:
		return errors.New("repository config: Redo is nil")
	case c.PageCacheSize < 0:
		return fmt.Errorf("repository config: PageCacheSize %d is negative", c.PageCacheSize)
	case c.LayerDiskBudget < 0:
		return fmt.Errorf("repository config: LayerDiskBudget %d is negative", c.LayerDiskBudget)
	case c.BlockCacheSize < 0:
		return fmt.Errorf("repository config: BlockCacheSize %d is negative", c.BlockCacheSize)
	case c.InMemoryLayerLimit <= 0:
		return fmt.Errorf("repository config: InMemoryLayerLimit %d must be positive", c.InMemoryLayerLimit)
	case c.MaxOpenLayerFiles < 0:
		return fmt.Errorf("repository config: MaxOpenLayerFiles %d is negative", c.MaxOpenLayerFiles)
	case c.FlushInterval < 0, c.CompactionInterval < 0, c.GCInterval < 0, c.UploadInterval < 0, c.UploadTimeout < 0:
		return errors.New("repository config: a background interval is negative")
	}
	return nil
}

// TenantConfig is a tenant's settings, stored in its config.toml.
type TenantConfig struct {
	// CheckpointDistance is how many bytes the open in-memory layer may
	// hold before it is frozen and flushed.
	CheckpointDistance int64 `toml:"checkpoint_distance" comment:"Bytes the open in-memory layer may hold before it is frozen and flushed."`
	// CheckpointTimeout is how old the open in-memory layer may get before
	// it is frozen and flushed.
	CheckpointTimeout tomlconf.Duration `toml:"checkpoint_timeout" comment:"Age at which the open in-memory layer is frozen and flushed (e.g. \"10m\")."`
	// CompactionTargetSize is the size compaction aims at for each delta
	// and image layer file it writes.
	CompactionTargetSize int64 `toml:"compaction_target_size" comment:"Size compaction aims at for each layer file it writes, in bytes."`
	// CompactionThreshold is how many flushed (L0) delta layers make
	// compaction rewrite them into key-partitioned ones.
	CompactionThreshold int `toml:"compaction_threshold" comment:"Flushed (L0) delta layers that trigger compaction."`
	// ImageCreationThreshold is how many delta layers over a key range,
	// not yet covered by a newer image, make compaction write images of
	// it. An L0 layer flushed before the checkpoint distance (by the
	// in-memory layers' memory limit, or their age) counts for the share
	// of CheckpointDistance its WAL spans.
	ImageCreationThreshold int `toml:"image_creation_threshold" comment:"Delta layers over a key range, not covered by a newer image, that trigger image layers (an L0 layer counts for the share of checkpoint_distance its WAL spans)."`
	// CompactionIdlePeriod is how long the timeline must have ingested
	// no WAL for compaction to make what was loaded readable without
	// WAL redo: it flushes the open in-memory layer (if it holds a
	// 64th of CheckpointDistance or more) and writes images of every
	// key that has none yet, below the thresholds. It runs once per
	// idle period, so a steady write load never triggers it, and it
	// writes each key's first image only. Zero disables it.
	CompactionIdlePeriod tomlconf.Duration `toml:"compaction_idle_period" comment:"Time without new WAL after which the open in-memory layer is flushed and keys without any image get one, once (e.g. \"10s\"); 0s: never."`
	// GCHorizon is how many bytes of WAL history below the last record GC
	// keeps.
	GCHorizon int64 `toml:"gc_horizon" comment:"Bytes of WAL history below the last record that GC keeps."`
	// PITRInterval is how much time of history GC keeps; zero keeps no
	// history for time's sake (the horizon alone decides).
	PITRInterval tomlconf.Duration `toml:"pitr_interval" comment:"Time of history GC keeps for point-in-time branches (e.g. \"168h\"); 0s for none."`
}

// DefaultTenantConfig returns the defaults for a new tenant.
func DefaultTenantConfig() TenantConfig {
	return TenantConfig{
		CheckpointDistance:     256 << 20,
		CheckpointTimeout:      tomlconf.Duration(10 * time.Minute),
		CompactionTargetSize:   128 << 20,
		CompactionThreshold:    10,
		ImageCreationThreshold: 3,
		CompactionIdlePeriod:   tomlconf.Duration(10 * time.Second),
		GCHorizon:              64 << 20,
		PITRInterval:           tomlconf.Duration(7 * 24 * time.Hour),
	}
}

// Validate reports the first bad field, by its TOML name.
func (c TenantConfig) Validate() error {
	switch {
	case c.CheckpointDistance <= 0:
		return fmt.Errorf("tenant config: checkpoint_distance %d must be positive", c.CheckpointDistance)
	case time.Duration(c.CheckpointTimeout) <= 0:
		return fmt.Errorf("tenant config: checkpoint_timeout %v must be positive", c.CheckpointTimeout)
	case c.CompactionTargetSize <= 0:
		return fmt.Errorf("tenant config: compaction_target_size %d must be positive", c.CompactionTargetSize)
	case c.CompactionThreshold < 1:
		return fmt.Errorf("tenant config: compaction_threshold %d must be at least 1", c.CompactionThreshold)
	case c.ImageCreationThreshold < 1:
		return fmt.Errorf("tenant config: image_creation_threshold %d must be at least 1", c.ImageCreationThreshold)
	case time.Duration(c.CompactionIdlePeriod) < 0:
		return fmt.Errorf("tenant config: compaction_idle_period %v must not be negative", c.CompactionIdlePeriod)
	case c.GCHorizon < 0:
		return fmt.Errorf("tenant config: gc_horizon %d must not be negative", c.GCHorizon)
	case time.Duration(c.PITRInterval) < 0:
		return fmt.Errorf("tenant config: pitr_interval %v must not be negative", c.PITRInterval)
	}
	return nil
}

// encodeTenantConfig renders c as TOML.
func encodeTenantConfig(c TenantConfig) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Zenith tenant settings; see repo.TenantConfig.\n")
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, fmt.Errorf("encode tenant config: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeTenantConfig parses TOML strictly, starting from the defaults so a
// file may leave settings out; unknown keys are errors.
func decodeTenantConfig(b []byte) (TenantConfig, error) {
	c := DefaultTenantConfig()
	if err := tomlconf.DecodeStrict("tenant config", b, &c); err != nil {
		return c, err
	}
	return c, c.Validate()
}
