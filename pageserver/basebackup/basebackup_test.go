package basebackup

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestBasebackupImport imports a stopped cluster, takes a basebackup at
// the import LSN and starts stock PostgreSQL on it: it starts without
// replay at that LSN, has the data (a prepared transaction included),
// takes writes and restarts cleanly.
func TestBasebackupImport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	settings := map[string]string{"max_prepared_transactions": "4"}
	src := pgtest.Start(t, settings)
	conn, err := pgx.Connect(ctx, src.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	exec(t, conn, itemsSQL...)
	exec(t, conn,
		"CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)",
		"INSERT INTO scratch SELECT generate_series(1, 1000)",
		"BEGIN",
		"INSERT INTO items VALUES (0, 'prepared')",
		"PREPARE TRANSACTION 'p1'",
	)
	conn.Close(ctx)
	if err := src.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	tn, tl := newTestTimeline(t, r)
	lsn, err := walingest.ImportDataDir(ctx, tl, src.DataDir(), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var progress []int64
	tarball := takeBasebackup(t, tl, lsn, Options{Progress: func(n int64) { progress = append(progress, n) }})
	if len(progress) < 2 || progress[len(progress)-1] != int64(len(tarball)) {
		t.Errorf("progress ends at %v after %d calls, want the tar's %d bytes", progress[max(0, len(progress)-1):], len(progress), len(tarball))
	}

	// A branch reads everything through its ancestor: same bytes.
	branch, err := tn.Branch(ctx, id.NewTimelineID(), tl.ID(), lsn)
	if err != nil {
		t.Fatal(err)
	}
	if b := takeBasebackup(t, branch, lsn, Options{}); !bytes.Equal(b, tarball) {
		t.Errorf("basebackup of a branch at %v: %d bytes differ from the %d of its ancestor's", lsn, len(b), len(tarball))
	}

	pg := newClusterFromTar(t, tarball, settings)
	compareDataDirs(t, src.DataDir(), pg.DataDir())
	checkLazyBasebackup(t, tl, lsn, pg.DataDir())
	cd, err := pg.ControlData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"Latest checkpoint location":        lsn.String(),
		"Latest checkpoint's REDO location": lsn.String(),
		"Database cluster state":            "shut down",
		"Minimum recovery ending location":  "0/0",
	} {
		if got := cd[field]; got != want {
			t.Errorf("pg_controldata %q = %q, want %q", field, got, want)
		}
	}

	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	assertCleanStart(t, pg)
	conn = connect(t, pg, "postgres")
	wantRows(t, conn, "SELECT count(*) FROM items", 20000-20000/7)
	wantRows(t, conn, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'p1'", 1)
	wantRows(t, conn, "SELECT count(*) FROM scratch", 0) // unlogged: reset as after a crash
	exec(t, conn,
		"COMMIT PREPARED 'p1'",
		"INSERT INTO scratch VALUES (1)",
		"CREATE TABLE after (id int)",
		"INSERT INTO after SELECT generate_series(1, 500)",
	)
	wantRows(t, conn, "SELECT count(*) FROM items WHERE id = 0", 1)
	conn.Close(ctx)
	conn = connect(t, pg, "second")
	if n := queryInt(t, conn, "SELECT count(*) FROM pg_class"); n < 300 {
		t.Errorf("database second has %d pg_class rows, want the catalog's few hundred", n)
	}
	conn.Close(ctx)

	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	conn = connect(t, pg, "postgres")
	defer conn.Close(ctx)
	wantRows(t, conn, "SELECT count(*) FROM after", 500)
	wantRows(t, conn, "SELECT count(*) FROM items", 20000-20000/7+1)
}

// TestBasebackupErrors checks the errors the page service maps to
// SQLSTATEs: an LSN not reached yet, one below the GC cut-off, and a
// timeline into which nothing was imported.
func TestBasebackupErrors(t *testing.T) {
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	tn, err := r.CreateTenant(id.NewTenantID(), repo.DefaultTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	const start = 0x2000000
	tl, err := tn.CreateTimeline(id.NewTimelineID(), start)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		lsn  pgdata.LSN
		want error
	}{
		{"future LSN", start + 0x100, repo.ErrLSNNotReached},
		{"below the GC cut-off", start - 0x100, repo.ErrBelowGCCutoff},
		{"nothing imported", start, datadir.ErrNoControlFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Basebackup(context.Background(), tl, tc.lsn, &out, Options{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Basebackup at %v: error = %v, want %v", tc.lsn, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.lsn.String()) {
				t.Errorf("error %q does not name the LSN %v", err, tc.lsn)
			}
			if out.Len() != 0 {
				t.Errorf("Basebackup wrote %d bytes before failing", out.Len())
			}
		})
	}
}

// takeBasebackup returns a basebackup of tl at lsn.
func takeBasebackup(t *testing.T, tl *repo.Timeline, lsn pgdata.LSN, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Basebackup(context.Background(), tl, lsn, &buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compareDataDirs checks that the basebackup's data directory got has
// every relation, SLRU, two-phase and configuration file of the stopped
// cluster's want byte for byte, except unlogged relations' main forks.
func compareDataDirs(t *testing.T, want, got string) {
	t.Helper()
	compared := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(want, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		top, _, _ := strings.Cut(rel, "/")
		switch {
		case walingest.SkippedTopLevel[top] || rel == "global/pg_control" || path.Base(rel) == "pg_internal.init":
			return nil
		case isUnloggedMainFork(want, rel):
			return nil
		}
		wb, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		gb, err := os.ReadFile(filepath.Join(got, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s: basebackup has %d bytes that differ from the cluster's %d", rel, len(gb), len(wb))
		}
		compared++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if compared < 1000 {
		t.Errorf("compared only %d files", compared)
	}
}

// isUnloggedMainFork reports whether rel is a relation file of a
// relation that has an init fork (an unlogged one) and not of that fork.
func isUnloggedMainFork(dir, rel string) bool {
	r, fork, _, err := pgdata.ParseRelationPath(rel)
	if err != nil || fork == pgdata.ForkInit {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, filepath.FromSlash(pgdata.RelationPath(r, pgdata.ForkInit, 0))))
	return err == nil
}
