package pgsuites

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoSources is returned by FindSources when the suites have not been
// prepared on this machine.
var ErrNoSources = errors.New("PostgreSQL 15 test suites not prepared on this machine")

// Sources is a tree prepared by scripts/pgsrc: PostgreSQL 15's
// src/test/regress and src/test/isolation, and the regression suite's C
// modules built against the installed server.
type Sources struct {
	// Dir is the tree's root.
	Dir string
}

// RegressDir is src/test/regress (sql, expected, data, parallel_schedule).
func (s Sources) RegressDir() string { return filepath.Join(s.Dir, "src", "test", "regress") }

// IsolationDir is src/test/isolation (specs, expected, isolation_schedule).
func (s Sources) IsolationDir() string { return filepath.Join(s.Dir, "src", "test", "isolation") }

// LibDir holds regress.so, refint.so and autoinc.so (pg_regress --dlpath).
func (s Sources) LibDir() string { return filepath.Join(s.Dir, "lib") }

// Version is the source package's version, from the tree's name
// (postgresql-15-<version>).
func (s Sources) Version() string {
	return strings.TrimPrefix(filepath.Base(s.Dir), "postgresql-15-")
}

// cacheDirs are where scripts/pgsrc keeps its cache, in its order.
func cacheDirs() []string {
	if d := os.Getenv("ZENITH_PGSRC_CACHE"); d != "" {
		return []string{d}
	}
	dirs := []string{"/var/cache/zenith/pgsrc"}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		dirs = append(dirs, filepath.Join(x, "zenith", "pgsrc"))
	} else if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, ".cache", "zenith", "pgsrc"))
	}
	return dirs
}

// FindSources returns the tree named by $ZENITH_PGSRC, else the one
// scripts/pgsrc recorded in its cache (<cache>/current). The error wraps
// ErrNoSources and says how to prepare them.
func FindSources() (Sources, error) {
	var tried []string
	candidates := []string{}
	if d := os.Getenv("ZENITH_PGSRC"); d != "" {
		candidates = append(candidates, d)
		tried = append(tried, "$ZENITH_PGSRC="+d)
	} else {
		for _, c := range cacheDirs() {
			tried = append(tried, filepath.Join(c, "current"))
			if b, err := os.ReadFile(filepath.Join(c, "current")); err == nil {
				candidates = append(candidates, strings.TrimSpace(string(b)))
			}
		}
	}
	var bad []string
	for _, d := range candidates {
		s := Sources{Dir: d}
		if err := s.check(); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", d, err))
			continue
		}
		return s, nil
	}
	if len(bad) > 0 {
		return Sources{}, fmt.Errorf("%w: %s (run scripts/pgsrc again)", ErrNoSources, strings.Join(bad, "; "))
	}
	return Sources{}, fmt.Errorf("%w: looked at %s; run scripts/pgsrc (apt-get source postgresql-15 through the machine's apt sources)",
		ErrNoSources, strings.Join(tried, ", "))
}

func (s Sources) check() error {
	for _, p := range []string{
		filepath.Join(s.RegressDir(), "parallel_schedule"),
		filepath.Join(s.RegressDir(), "sql"),
		filepath.Join(s.RegressDir(), "expected"),
		filepath.Join(s.IsolationDir(), "isolation_schedule"),
		filepath.Join(s.IsolationDir(), "specs"),
		filepath.Join(s.LibDir(), "regress.so"),
	} {
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	return nil
}
