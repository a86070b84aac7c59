package pageserver_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/basebackup"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/pagecheck"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tarfile"
)

// TestIngestTablespaces runs the tablespace workload (in-place and
// LOCATION tablespaces, relations and databases in them, every way of
// moving them, DROP TABLESPACE, DROP DATABASE across tablespaces) on a
// fresh imported cluster, ingests its WAL record by record and checks:
//   - the tablespace list as of the import, just before and after DROP
//     TABLESPACE, and at the end;
//   - at the end, every tablespace, database directory, PG_VERSION,
//     relation map, relation, fork size and (masked) page as in the
//     stopped data directory, pg_tblspc included (the oracle);
//   - stock PostgreSQL started on a basebackup at the end, with each
//     tablespace in place under pg_tblspc (the tar as any tar tool
//     extracts it), dumps what the original dumped, but for the
//     LOCATION tablespace's location; on one at the import LSN there is
//     no tablespace.
func TestIngestTablespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL 15")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	pg, m, tn, tl, start := importFreshCluster(ctx, t)
	importDump := pageserver.DumpAll(t, pg)
	location := tablespaceLocation(t, pg.User())
	if err := workload.Tablespaces(ctx, pg.ConnString("postgres"), location); err != nil {
		t.Fatal(err)
	}
	cat := pagecheck.ReadCatalogs(ctx, t, pg.ConnString, workload.DatabaseWALLog)
	conn := pageserver.Connect(t, pg, "postgres")
	for _, db := range workload.TablespaceWALLogDatabases {
		cat.WALLog[uint32(pageserver.QueryInt(t, conn, "SELECT oid::int8 FROM pg_database WHERE datname = '"+db+"'"))] = true
	}
	conn.Close(ctx)
	finalDump := pageserver.DumpAll(t, pg)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	ing, err := walingest.NewWalIngest(ctx, tl, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var dropStart, dropEnd pgdata.LSN
	counts, _ := pageserver.IngestWALEach(t, ing, filepath.Join(pg.DataDir(), "pg_wal"), start, func(rec *pgdata.Record) {
		if rec.Rmgr() == pgdata.RmgrTablespace && rec.RmgrInfo() == pgdata.XLogTblspcDrop {
			dropStart, dropEnd = rec.LSN, rec.EndLSN
		}
	})
	pagecheck.Report(t, "records ingested, by resource manager", counts)
	if counts["Tablespace"] != 4 || dropStart == 0 {
		t.Fatalf("%d tablespace records ingested, want 3 creations and 1 drop", counts["Tablespace"])
	}

	names := func(lsn pgdata.LSN) []string {
		list, err := datadir.NewDatadirReader(tl, lsn).Tablespaces(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, ts := range list {
			s = append(s, fmt.Sprintf("%s %q", ts.Dir(), ts.Location))
		}
		return s
	}
	before, after, final := names(dropStart), names(dropEnd), names(tl.LastRecordLSN())
	if got := names(start); len(got) != 0 {
		t.Errorf("tablespaces at the import: %v, want none", got)
	}
	if len(before) != 3 || len(after) != 2 || !slices.Equal(after, final) || !isSubset(after, before) {
		t.Errorf("tablespaces before DROP TABLESPACE %v, after %v, at the end %v: want 3, then 2, then the same 2", before, after, final)
	}
	if !slices.ContainsFunc(final, func(s string) bool { return strings.HasSuffix(s, fmt.Sprintf(" %q", location)) }) {
		t.Errorf("tablespaces at the end %v: none at %s", final, location)
	}

	o := pagecheck.New(ctx, t, m, tn.ID().String(), datadir.NewDatadirReader(tl, tl.LastRecordLSN()), pg.DataDir(), cat)
	o.CheckDatabases()
	o.Report(fmt.Sprintf("values compared at %v", tl.LastRecordLSN()))

	for _, tc := range []struct {
		name string
		lsn  pgdata.LSN
		want string
		dirs int // entries of pg_tblspc
	}{
		{"at the import", start, importDump, 0},
		{"at the end", tl.LastRecordLSN(), finalDump, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tarball := pageserver.TakeBasebackup(t, tl, tc.lsn, basebackup.Options{})
			entries := tablespaceEntries(t, tarball)
			if len(entries) != tc.dirs || tc.dirs > 0 && !slices.Contains(slices.Collect(maps.Values(entries)), location) {
				t.Errorf("basebackup has tablespace entries %v, want %d, one with location %s", entries, tc.dirs, location)
			}
			bb := pageserver.NewClusterFromTar(t, tarball, workload.Settings())
			if err := bb.Start(ctx); err != nil {
				t.Fatal(err)
			}
			pageserver.AssertCleanStart(t, bb)
			got, want := workload.MaskTablespaceLocation(pageserver.DumpAll(t, bb)), workload.MaskTablespaceLocation(tc.want)
			if tc.lsn == start {
				// initdb's cluster has no sequence, which compareDumps
				// wants to see.
				if got != want {
					t.Errorf("pg_dumpall of the basebackup differs from the original's at the import:\n%s", pgdump.FirstDifference(got, want))
				}
				return
			}
			pageserver.CompareDumps(t, got, want)
		})
	}
}

// tablespaceLocation makes an empty directory for CREATE TABLESPACE ...
// LOCATION that the server's OS user u owns and can reach.
func tablespaceLocation(t *testing.T, u *pgcluster.OSUser) string {
	t.Helper()
	root, err := os.MkdirTemp("", "zenith-tablespace-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "location")
	if err := pgcluster.PrepareDir(dir, u); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tablespaceEntries returns the pg_tblspc/<OID> entries of a basebackup,
// each with the location its PAX record names ("" for none).
func tablespaceEntries(t *testing.T, tarball []byte) map[string]string {
	t.Helper()
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if dir, oid, _ := strings.Cut(strings.TrimSuffix(h.Name, "/"), "/"); dir == "pg_tblspc" && oid != "" && !strings.Contains(oid, "/") {
			got[oid] = h.PAXRecords[tarfile.TablespaceLocationKey]
		}
	}
}

func isSubset(sub, of []string) bool {
	for _, s := range sub {
		if !slices.Contains(of, s) {
			return false
		}
	}
	return true
}
