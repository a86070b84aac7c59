package pgsuites_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/pagecheck"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/walredo"
)

// checkPages is the page oracle (pagecheck) over the suites' databases:
// the compute pg is stopped cleanly, and once the page server has its
// shutdown checkpoint, the environment is stopped and the page server's
// repository, opened here, must hold at that LSN every page of the
// compute's data directory (after rm_mask, exceptions counted by reason),
// its SLRUs and its checkpoint counters.
func checkPages(ctx context.Context, t *testing.T, env *zenithtest.Env, pg *zenithtest.Postgres, binDir string) {
	t.Helper()
	cat := pagecheck.ReadCatalogs(ctx, t, func(db string) string {
		return strings.TrimSuffix(pg.ConnString, "/postgres") + "/" + db + "?sslmode=disable"
	})
	pg.Stop()
	dirs, _ := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", pg.Name, "pgdata"))
	if len(dirs) != 1 {
		t.Fatalf("data directory of %s: found %q", pg, dirs)
	}
	dir := dirs[0]
	tenant, err := id.ParseTenantID(filepath.Base(filepath.Dir(filepath.Dir(dir))))
	if err != nil {
		t.Fatalf("tenant of %s: %v", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		t.Fatal(err)
	}
	waitPrevRecord(t, env, "main", cf.CheckPoint)
	env.Zenith("stop")

	m := openRedo(ctx, t, binDir)
	r, err := repo.Open(repo.Config{Workdir: filepath.Join(env.RepoDir, "pageserver"), Redo: pageserver.NewRedo(m), Logger: zerolog.Nop(), InMemoryLayerLimit: repo.DefaultConfig("").InMemoryLayerLimit})
	if err != nil {
		t.Fatalf("open the page server's repository: %v", err)
	}
	defer r.Close()
	tn, err := r.Tenant(tenant)
	if err != nil {
		t.Fatal(err)
	}
	var tl *repo.Timeline
	for _, info := range tn.Timelines() {
		if info.Ancestor.IsZero() {
			if tl, err = tn.Timeline(info.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if tl == nil {
		t.Fatalf("tenant %s has no root timeline", tenant)
	}
	final := tl.LastRecordLSN()
	if got := tl.PrevRecordLSN(); got != cf.CheckPoint {
		t.Fatalf("reopened repository: last record at %v, want the compute's shutdown checkpoint %v", got, cf.CheckPoint)
	}
	start := time.Now()
	o := pagecheck.New(ctx, t, m, tenant.String(), datadir.NewDatadirReader(tl, final), dir, cat)
	o.CheckDatabases()
	o.CheckSLRUs()
	o.CheckTwoPhase(0)
	cp, err := o.Reader().Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.CheckCheckpoint("at the end", cp, cf)
	o.Report(fmt.Sprintf("values compared at %v (%v)", final, time.Since(start).Round(time.Second)))
}

// eagerForPages replaces the lazy re-created compute re with an eager
// one on the same branch, for checkPages. checkPages cannot read a lazy
// node's files: it reads the data directory after pg stop, which
// unmounts it, and opens the page server's repository only after the
// page server is stopped, when a mount could no longer fetch a block.
// Keeping the mount and reading it before would not be the same oracle
// either: every block the node did not write would be a GetPage answer
// of the page server under test, fetched at the time of the read, not a
// copy the compute holds. An eager re-creation is what checkPages reads
// in eager mode too (its data directory is written out from one
// basebackup and its shutdown checkpoint). What is lazy-specific (the
// live compute, the branch and the re-created compute reading through
// FUSE) is checked before, by the suites, the dumps and pg_amcheck on
// lazy nodes.
func eagerForPages(t *testing.T, env *zenithtest.Env, re *zenithtest.Postgres) *zenithtest.Postgres {
	t.Helper()
	re.Destroy()
	t.Logf("page oracle: on an eager re-creation of %s (a lazy node's files are the page server's own)", re.Name)
	return startNode(t, env, re.Name, modeEager)
}

// waitPrevRecord waits until branch's last record starts at lsn.
func waitPrevRecord(t *testing.T, env *zenithtest.Env, branch string, lsn pgdata.LSN) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var branches []struct {
			Name string `json:"name"`
			Last string `json:"last_record_lsn"`
			Prev string `json:"prev_record_lsn"`
		}
		if err := json.Unmarshal([]byte(env.Zenith("branch", "list", "--json")), &branches); err != nil {
			t.Fatalf("zenith branch list --json: %v", err)
		}
		for _, b := range branches {
			if b.Name == branch && b.Prev == lsn.String() {
				return
			}
			if b.Name == branch && time.Now().After(deadline) {
				t.Fatalf("branch %s: last record at %s (ends %s), not the compute's shutdown checkpoint %v, after 2 minutes", branch, b.Prev, b.Last, lsn)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// openRedo opens a WAL redo manager in a scratch directory, with the
// module scripts/build made (next to the zenith binary under test, or in
// walredo/pgext of the checkout).
func openRedo(ctx context.Context, t *testing.T, binDir string) *walredo.Manager {
	t.Helper()
	bin := zenithtest.Binary(t)
	var ext string
	for _, c := range []string{
		filepath.Join(filepath.Dir(bin), walredo.ExtensionFile),
		filepath.Join(filepath.Dir(bin), "..", "walredo", "pgext", walredo.ExtensionFile),
		filepath.Join("..", "..", "walredo", "pgext", walredo.ExtensionFile),
	} {
		if _, err := os.Stat(c); err == nil {
			ext, _ = filepath.Abs(c)
			break
		}
	}
	if ext == "" {
		t.Fatalf("the WAL redo module %s is not built: run scripts/build", walredo.ExtensionFile)
	}
	// Not t.TempDir(): the postgres OS user must reach it.
	dir, err := os.MkdirTemp("", "zenith-pgsuites-walredo-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := walredo.DefaultConfig()
	cfg.Dir, cfg.BinDir, cfg.Extension = filepath.Join(dir, "walredo"), binDir, ext
	m, err := walredo.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close walredo: %v", err)
		}
		os.RemoveAll(dir)
	})
	return m
}
