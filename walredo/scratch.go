package walredo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// scratchDBDir is the directory of the module's scratch relations in a
// slot (SCRATCH_DB_OID in zenith_walredo.c).
const scratchDBDir = "base/999999999"

// createFunction is run once in the template so that a process can start
// the module by name (found through dynamic_library_path).
const createFunction = "CREATE FUNCTION zenith_walredo_serve() RETURNS void AS 'zenith_walredo', 'zenith_walredo_serve' LANGUAGE C STRICT;\n"

// verifiedFile records, in Config.Dir, the hash of the last module the
// template's PostgreSQL loaded.
const verifiedFile = "module-verified"

// scratch owns Config.Dir: the template data directory and the slots
// processes run in.
type scratch struct {
	dir     string
	libDir  string // the module's directory in the cache
	binDir  string
	version string // the server's version text (SELECT version())
	user    *pgcluster.OSUser
	log     zerolog.Logger

	mu   sync.Mutex
	free []int // slots whose directories exist and no process uses
	next int   // the lowest slot number never created
}

// slot is a data directory one process at a time runs in.
type slot struct {
	n   int
	dir string
}

// openScratch prepares dir: installs the module in cacheDir, creates the
// template data directory if there is none yet, and checks that this
// PostgreSQL loads the module (once per module).
func openScratch(ctx context.Context, dir, binDir, cacheDir string, m *Module, user *pgcluster.OSUser, log zerolog.Logger) (*scratch, error) {
	version, err := pgcluster.Version(ctx, binDir)
	if err != nil {
		return nil, err
	}
	if err := m.checkMajor(binDir, version); err != nil {
		return nil, err
	}
	libDir, err := m.Install(cacheDir, user)
	if err != nil {
		return nil, err
	}
	s := &scratch{dir: dir, libDir: libDir, binDir: binDir, version: version.Text, user: user, log: log}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create walredo directory: %w", err)
	}
	// The postgres OS user must reach the slots.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("walredo directory: %w", err)
	}
	if err := s.checkLoads(ctx, m, version); err != nil {
		return nil, err
	}
	if err := s.findSlots(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkLoads makes sure this PostgreSQL loads the module: creating the
// template loads it (its CREATE FUNCTION), and an existing template loads
// it once per module (LOAD). A refusal is an *IncompatibleModuleError.
func (s *scratch) checkLoads(ctx context.Context, m *Module, version pgcluster.ServerVersion) error {
	verifiedPath := filepath.Join(s.dir, verifiedFile)
	verified, _ := os.ReadFile(verifiedPath)
	var err error
	_, statErr := os.Stat(s.templateDir())
	switch {
	case os.IsNotExist(statErr):
		err = s.createTemplate(ctx)
	case statErr != nil:
		return fmt.Errorf("walredo template: %w", statErr)
	case string(verified) == m.Hash():
		return nil
	default:
		if err = s.run(ctx, "LOAD 'zenith_walredo';\n"); err != nil {
			err = fmt.Errorf("walredo: load the module (%s): %w", m.Source, err)
		}
	}
	if detail := incompatibleDetail(err); detail != "" {
		return &IncompatibleModuleError{Module: m.Build, Source: m.Source, BinDir: s.binDir, Server: version.Text, Detail: detail}
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(verifiedPath, []byte(m.Hash()), 0o644); err != nil {
		return fmt.Errorf("walredo directory: %w", err)
	}
	return nil
}

func (s *scratch) templateDir() string { return filepath.Join(s.dir, "template") }

// createTemplate makes the template: a copy of the machine's cached
// template for this module and this PostgreSQL if there is one, else
// initdb (as the postgres OS user when root) and the module's SQL
// function, kept in the cache for the next page server. It is built
// aside and renamed into place, so a half-made template is never used.
func (s *scratch) createTemplate(ctx context.Context) error {
	tmp := s.templateDir() + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	cached := s.cachedTemplate()
	from := "initdb"
	if err := s.copyTemplate(cached, tmp); err == nil {
		from = cached
	} else {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn().Err(err).Str("cached", cached).Msg("walredo template: the cached copy is unusable, running initdb")
		}
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("walredo template: %w", err)
		}
		if err := s.initTemplate(ctx, tmp); err != nil {
			return err
		}
		s.keepTemplate(tmp, cached)
	}
	if err := os.Rename(tmp, s.templateDir()); err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	os.Remove(tmp + ".log")
	s.log.Info().Str("dir", s.templateDir()).Str("from", from).Msg("walredo template data directory created")
	return nil
}

// initTemplate initdbs dir and creates the module's function in it.
func (s *scratch) initTemplate(ctx context.Context, dir string) error {
	c, err := pgcluster.New(ctx, pgcluster.Options{BinDir: s.binDir, DataDir: dir, Log: s.log})
	if err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	// 1 MB WAL segments keep the template, copied into every slot, small.
	if err := c.InitDB(ctx, pgcluster.InitOptions{NoSync: true, Args: []string{"--wal-segsize=1"}}); err != nil {
		return fmt.Errorf("walredo template: %w", err)
	}
	if err := runSingle(ctx, s.binDir, dir, s.libDir, s.user, createFunction); err != nil {
		return fmt.Errorf("walredo template: create the module's function: %w", err)
	}
	return nil
}

// cachedTemplate is where the machine keeps a template made for this
// module (s.libDir is the module's own directory in the cache) and this
// PostgreSQL: initdb takes seconds, a copy a fraction of one, and every
// new page server directory needs a template.
func (s *scratch) cachedTemplate() string {
	sum := sha256.Sum256([]byte(s.binDir + "\x00" + s.version))
	return filepath.Join(s.libDir, "template-"+hex.EncodeToString(sum[:8]))
}

// copyTemplate copies a cached template into dir, for s.user. A cache
// with no template yet is fs.ErrNotExist.
func (s *scratch) copyTemplate(cached, dir string) error {
	if _, err := os.Stat(filepath.Join(cached, "global", "pg_control")); err != nil {
		return err
	}
	if err := os.CopyFS(dir, os.DirFS(cached)); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return pgcluster.PrepareDir(dir, s.user)
}

// keepTemplate copies the template just made into the cache, aside and
// renamed into place (another page server may do the same at once: the
// first rename wins). Failing to is logged: the cache only saves time.
func (s *scratch) keepTemplate(dir, cached string) {
	tmp, err := os.MkdirTemp(filepath.Dir(cached), ".template-*")
	if err == nil {
		if err = os.CopyFS(filepath.Join(tmp, "t"), os.DirFS(dir)); err == nil {
			err = os.Rename(filepath.Join(tmp, "t"), cached)
		}
		os.RemoveAll(tmp)
	}
	if err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		s.log.Warn().Err(err).Str("cached", cached).Msg("walredo template: not kept in the cache")
	}
}

// run runs SQL in a single-user PostgreSQL on the template.
func (s *scratch) run(ctx context.Context, sql string) error {
	return runSingle(ctx, s.binDir, s.templateDir(), s.libDir, s.user, sql)
}

// runSingle runs SQL in `postgres --single` on dataDir with the module's
// directory on dynamic_library_path; an ERROR or FATAL is an error
// holding PostgreSQL's output.
func runSingle(ctx context.Context, binDir, dataDir, libDir string, user *pgcluster.OSUser, sql string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), processArgs(dataDir, libDir)...)
	pgcluster.RunAs(cmd, user)
	cmd.Dir = dataDir
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("ERROR:")) || bytes.Contains(out, []byte("FATAL:")) {
		return &singleError{err: err, out: string(out)}
	}
	return nil
}

// singleError is a failed single-user PostgreSQL run and its output.
type singleError struct {
	err error
	out string
}

func (e *singleError) Error() string { return fmt.Sprintf("%v\n%s", e.err, e.out) }

// incompatibleDetail returns PostgreSQL's lines about a module it refuses
// to load (internal_load_library in dfmgr.c: "incompatible library",
// "missing magic block", and their DETAIL), or "" for other errors.
func incompatibleDetail(err error) string {
	var se *singleError
	if !errors.As(err, &se) || !strings.Contains(se.out, "incompatible library") {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(se.out, "\n") {
		// Single-user mode's prompt ("backend> ") can come first.
		for _, level := range []string{"ERROR:", "DETAIL:", "HINT:"} {
			if i := strings.Index(l, level); i >= 0 {
				lines = append(lines, strings.Join(strings.Fields(l[i:]), " "))
				break
			}
		}
	}
	return strings.Join(lines, " ")
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
