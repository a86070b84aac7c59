package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultBinDir is where Debian's postgresql-15 package installs the
// server programs.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// MajorVersion is the PostgreSQL major version zenith runs.
const MajorVersion = 15

// ErrNotFound is returned (wrapped) by FindBinDir when no PostgreSQL 15
// installation can be found.
var ErrNotFound = errors.New("PostgreSQL 15 not found")

// FindBinDir returns the directory holding PostgreSQL 15's server programs
// (postgres, initdb, pg_waldump...). A non-empty override (zenith's
// --pg-bin) is the only place looked at; otherwise DefaultBinDir, then the
// directory `pg_config --bindir` names. A candidate counts only if its
// postgres reports major version 15.
func FindBinDir(ctx context.Context, override string) (string, error) {
	if override != "" {
		if err := checkBinDir(ctx, override); err != nil {
			return "", fmt.Errorf("%w in %s (from --pg-bin): %v", ErrNotFound, override, err)
		}
		return override, nil
	}
	candidates := []string{DefaultBinDir}
	if dir, err := pgConfigBinDir(ctx); err == nil && dir != DefaultBinDir {
		candidates = append(candidates, dir)
	}
	var reasons []string
	for _, dir := range candidates {
		err := checkBinDir(ctx, dir)
		if err == nil {
			return dir, nil
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", dir, err))
	}
	return "", fmt.Errorf("%w in %s or pg_config --bindir (%s): install postgresql-15 or pass --pg-bin",
		ErrNotFound, DefaultBinDir, strings.Join(reasons, "; "))
}

func pgConfigBinDir(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// versionChecked remembers the directories whose postgres checkBinDir
// found to be version 15, with that binary's modification time: a
// command such as zenith pg start makes several Clusters, and each
// `postgres --version` is a process started (tens of milliseconds on a
// loaded machine). A binary replaced since is checked again.
var versionChecked sync.Map // dir -> time.Time

// checkBinDir verifies that dir holds the programs zenith runs and that
// its postgres is major version 15.
func checkBinDir(ctx context.Context, dir string) error {
	var postgresTime time.Time
	for _, prog := range []string{"postgres", "initdb", "pg_controldata"} {
		st, err := os.Stat(filepath.Join(dir, prog))
		if err != nil {
			return fmt.Errorf("no %s", prog)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", prog)
		}
		if prog == "postgres" {
			postgresTime = st.ModTime()
		}
	}
	if t, ok := versionChecked.Load(dir); ok && t.(time.Time).Equal(postgresTime) {
		return nil
	}
	v, err := Version(ctx, dir)
	if err != nil {
		return err
	}
	if v.Major != MajorVersion {
		return fmt.Errorf("postgres is version %d, want %d", v.Major, MajorVersion)
	}
	versionChecked.Store(dir, postgresTime)
	return nil
}
