package walredo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// ExtensionFile is the file name of the redo module walredo/pgext builds.
const ExtensionFile = "zenith_walredo.so"

// scratchDBDir is the directory of the module's scratch relations in a
// slot (SCRATCH_DB_OID in zenith_walredo.c).
const scratchDBDir = "base/999999999"

// createFunction is run once in the template so that a process can start
// the module by name (found through dynamic_library_path).
const createFunction = "CREATE FUNCTION zenith_walredo_serve() RETURNS void AS 'zenith_walredo', 'zenith_walredo_serve' LANGUAGE C STRICT;\n"

// scratch owns Config.Dir: the module's copy, the template data directory
// and the slots processes run in.
type scratch struct {
	dir    string
	libDir string
	binDir string
	user   *pgcluster.OSUser
	log    zerolog.Logger

	mu   sync.Mutex
	free []int // slots whose directories exist and no process uses
	next int   // the lowest slot number never created
}

// slot is a data directory one process at a time runs in.
type slot struct {
	n   int
	dir string
}

// openScratch prepares dir: installs the module from extension and
// creates the template data directory if there is none yet.
func openScratch(ctx context.Context, dir, binDir, extension string, user *pgcluster.OSUser, log zerolog.Logger) (*scratch, error) {
	s := &scratch{dir: dir, libDir: filepath.Join(dir, "lib"), binDir: binDir, user: user, log: log}
	for _, d := range []string{dir, s.libDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create walredo directory: %w", err)
		}
		// The postgres OS user must reach the module and the slots.
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("walredo directory: %w", err)
		}
	}
	if err := installExtension(extension, s.libDir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.templateDir()); os.IsNotExist(err) {
		if err := s.createTemplate(ctx); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("walredo template: %w", err)
	}
	if err := s.findSlots(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *scratch) templateDir() string { return filepath.Join(s.dir, "template") }

// installExtension copies the module into libDir unless an identical copy
// is there. The copy is written aside and renamed over the old one, so a
// running process keeps the file it mapped.
func installExtension(src, libDir string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read the walredo module: %w (build it with scripts/build, or set the extension path)", err)
	}
	dst := filepath.Join(libDir, ExtensionFile)
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("install the walredo module: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("install the walredo module: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install the walredo module: %w", err)
	}
	return nil
}

// createTemplate initdbs the template (as the postgres OS user when root)
// and creates the module's SQL function in it. It is built aside and
// renamed into place, so a half-made template is never used.
func (s *scratch) createTemplate(ctx context.Context) error {
	tmp := s.templateDir() + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	c, err := pgcluster.New(ctx, pgcluster.Options{BinDir: s.binDir, DataDir: tmp, Log: s.log})
	if err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	// 1 MB WAL segments keep the template, copied into every slot, small.
	if err := c.InitDB(ctx, pgcluster.InitOptions{NoSync: true, Args: []string{"--wal-segsize=1"}}); err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	args := processArgs(tmp, s.libDir)
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "postgres"), args...)
	pgcluster.RunAs(cmd, s.user)
	cmd.Dir = tmp
	cmd.Stdin = strings.NewReader(createFunction)
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("ERROR:")) || bytes.Contains(out, []byte("FATAL:")) {
		return fmt.Errorf("walredo template: create the module's function: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, s.templateDir()); err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	os.Remove(tmp + ".log")
	s.log.Info().Str("dir", s.templateDir()).Msg("walredo template data directory created")
	return nil
}

// findSlots registers the slot directories earlier runs left.
func (s *scratch) findSlots() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("walredo directory: %w", err)
	}
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "slot-"))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "slot-") || err != nil || n < 0 {
			continue
		}
		s.free = append(s.free, n)
		s.next = max(s.next, n+1)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(s.free)))
	return nil
}

// acquire returns a slot for a new process: a free one, cleaned of what
// the last process there left, or a new copy of the template.
func (s *scratch) acquire() (*slot, error) {
	s.mu.Lock()
	var n int
	reuse := len(s.free) > 0
	if reuse {
		n = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	} else {
		n = s.next
		s.next++
	}
	s.mu.Unlock()
	sl := &slot{n: n, dir: filepath.Join(s.dir, fmt.Sprintf("slot-%d", n))}
	var err error
	if reuse {
		err = s.clean(sl)
	} else {
		err = s.create(sl)
	}
	if err != nil {
		s.release(sl)
		return nil, err
	}
	return sl, nil
}

// release makes a slot available again once its process is gone.
func (s *scratch) release(sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, sl.n)
}

// clean removes the scratch relations of the slot's last process and its
// lock file: the process is known dead, and its pid may since belong to
// someone else, which would make PostgreSQL refuse to start.
func (s *scratch) clean(sl *slot) error {
	if err := os.RemoveAll(filepath.Join(sl.dir, scratchDBDir)); err != nil {
		return fmt.Errorf("clean walredo slot: %w", err)
	}
	if err := os.Remove(filepath.Join(sl.dir, "postmaster.pid")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("clean walredo slot: %w", err)
	}
	return nil
}

// create copies the template into a new slot.
func (s *scratch) create(sl *slot) error {
	start := time.Now()
	tmp := sl.dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("create walredo slot: %w", err)
	}
	if err := os.CopyFS(tmp, os.DirFS(s.templateDir())); err != nil {
		return fmt.Errorf("create walredo slot: copy the template: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("create walredo slot: %w", err)
	}
	if err := pgcluster.PrepareDir(tmp, s.user); err != nil {
		return fmt.Errorf("create walredo slot: %w", err)
	}
	if err := s.clean(&slot{dir: tmp}); err != nil {
		return err
	}
	if err := os.Rename(tmp, sl.dir); err != nil {
		return fmt.Errorf("create walredo slot: %w", err)
	}
	s.log.Debug().Str("dir", sl.dir).Dur("took", time.Since(start)).Msg("walredo slot created")
	return nil
}
