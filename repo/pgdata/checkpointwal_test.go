package pgdata_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestStartOnShutdownCheckpointWAL checks DESIGN section 7 on stock
// PostgreSQL 15: given only a synthetic shutdown checkpoint record at an
// LSN and a pg_control pointing at it, the server starts without replay,
// takes its counters from pg_control, writes after the record, restarts
// cleanly, and recovers from a crash. It tries the positions that need
// care: mid-page, a page boundary, a segment boundary, and a record that
// crosses into the next segment.
func TestStartOnShutdownCheckpointWAL(t *testing.T) {
	const seg = pgdata.WALSegmentSize
	cases := []struct {
		name string
		at   func(base pgdata.LSN) pgdata.LSN
	}{
		{"mid page", func(b pgdata.LSN) pgdata.LSN { return b + 3*seg + 5*pgdata.XLogBlockSize + 1000 }},
		{"page boundary", func(b pgdata.LSN) pgdata.LSN { return b + 3*seg + 7*pgdata.XLogBlockSize }},
		{"segment boundary", func(b pgdata.LSN) pgdata.LSN { return b + 4*seg }},
		{"crosses segments", func(b pgdata.LSN) pgdata.LSN { return b + 4*seg - 64 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pg := pgtest.New(t, map[string]string{"max_prepared_transactions": "5"})
			controlPath := filepath.Join(pg.DataDir(), "global", "pg_control")
			raw, err := os.ReadFile(controlPath)
			if err != nil {
				t.Fatal(err)
			}
			ctl, err := pgdata.ParseControlFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			// A point well past initdb's WAL, in a segment of its own.
			base := pgdata.LSN(ctl.CheckPoint.SegmentNo(seg) * seg)
			at := tc.at(base)
			cp := ctl.CheckPointCopy
			cp.NextXid = 5000
			cp.NextOid = 100000
			wal, err := pgdata.BuildShutdownCheckpointWAL(ctl.SystemIdentifier, 1, seg, at, ctl.CheckPoint, cp)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "crosses segments" && len(wal.Files) != 2 {
				t.Fatalf("record at %v: got %d segment files, want 2", wal.RecordLSN, len(wal.Files))
			}
			replaceWAL(t, pg, wal.Files)
			ctl.CheckPoint = wal.RecordLSN
			ctl.CheckPointCopy = cp
			ctl.CheckPointCopy.Redo = wal.RecordLSN
			ctl.State = pgdata.DBShutdowned
			ctl.MinRecoveryPoint = 0
			if err := os.WriteFile(controlPath, ctl.Encode(), 0o600); err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := pg.Start(ctx); err != nil {
				t.Fatal(err)
			}
			log := readLog(t, pg)
			if strings.Contains(log, "redo starts") || !strings.Contains(log, "database system was shut down at") {
				t.Fatalf("server did not start cleanly without replay; log:\n%s", log)
			}
			conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			var xid int64
			var insertLSN string
			if err := conn.QueryRow(ctx, "SELECT txid_current(), pg_current_wal_insert_lsn()::text").Scan(&xid, &insertLSN); err != nil {
				t.Fatal(err)
			}
			if xid < 5000 {
				t.Errorf("txid_current() = %d: the server did not take next XID 5000 from pg_control", xid)
			}
			if l, err := pgdata.ParseLSN(insertLSN); err != nil || l < wal.EndLSN {
				t.Errorf("insert LSN %s is not after the checkpoint record's end %v", insertLSN, wal.EndLSN)
			}
			mustExec(t, conn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
			var oid uint32
			if err := conn.QueryRow(ctx, "SELECT 't'::regclass::oid").Scan(&oid); err != nil || oid < 100000 {
				t.Errorf("new table's OID %d: the server did not take next OID 100000 from pg_control (%v)", oid, err)
			}
			mustExec(t, conn, "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g")
			conn.Close(ctx)

			// Clean restart, then a crash: recovery starts from our record
			// or a later checkpoint, and the rows are there.
			if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
				t.Fatal(err)
			}
			if err := pg.Start(ctx); err != nil {
				t.Fatal(err)
			}
			conn, err = pgx.Connect(ctx, pg.ConnString("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			mustExec(t, conn, "INSERT INTO t SELECT g, 'after restart' FROM generate_series(5001, 6000) g")
			conn.Close(ctx)
			if err := pg.Stop(ctx, pgcluster.StopImmediate); err != nil {
				t.Fatal(err)
			}
			if err := pg.Start(ctx); err != nil {
				t.Fatalf("start after crash: %v", err)
			}
			if log := readLog(t, pg); !strings.Contains(log, "redo done") {
				t.Errorf("no crash recovery after an immediate stop; log:\n%s", log)
			}
			conn, err = pgx.Connect(ctx, pg.ConnString("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 6000 {
				t.Errorf("after crash recovery: %d rows (%v), want 6000", n, err)
			}
		})
	}
}

func TestBuildShutdownCheckpointWALRejects(t *testing.T) {
	cp := pgdata.CheckPoint{}
	for _, tc := range []struct {
		name     string
		at, prev pgdata.LSN
		want     string
	}{
		{"unaligned", 0x1000003, 0x100, "aligned"},
		{"inside a page header", 0x1002008, 0x100, "inside a page header"},
		{"prev not before", 0x1000800, 0x1000800, "not before"},
	} {
		_, err := pgdata.BuildShutdownCheckpointWAL(1, 1, pgdata.WALSegmentSize, tc.at, tc.prev, cp)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func replaceWAL(t *testing.T, pg *pgcluster.Cluster, files []pgdata.WALFile) {
	t.Helper()
	walDir := filepath.Join(pg.DataDir(), "pg_wal")
	old, err := filepath.Glob(filepath.Join(walDir, "0000*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(walDir, f.Name)
		if err := os.WriteFile(p, f.Data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := chownLike(p, st); err != nil {
			t.Fatal(err)
		}
	}
}

func readLog(t *testing.T, pg *pgcluster.Cluster) string {
	t.Helper()
	b, err := os.ReadFile(pg.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
