package pgdata_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestPageChecksumMatchesPostgreSQL checks PageChecksum against every
// initialized page of a real cluster with data checksums, as
// pg_checksums and the server wrote them (catalogs, a table, its index,
// their free space and visibility maps; every file is one segment, so a
// block's number is its place in the file), and that the same page as
// another block does not match.
func TestPageChecksumMatchesPostgreSQL(t *testing.T) {
	pg := pgtest.New(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := pg.Command(ctx, "pg_checksums", "--enable", "--no-sync", "-D", pg.DataDir()).CombinedOutput(); err != nil {
		t.Fatalf("pg_checksums --enable: %v\n%s", err, out)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CREATE TABLE t AS SELECT g, md5(g::text) AS s FROM generate_series(1, 20000) g",
		"CREATE INDEX ON t (s)",
		"UPDATE t SET s = 'x' WHERE g % 7 = 0",
		"VACUUM t",
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn.Close(ctx)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	relFile := regexp.MustCompile(`^[0-9]+(_fsm|_vm)?$`)
	pages := 0
	movedChecked := false
	for _, dir := range []string{"global", "base"} {
		err := filepath.WalkDir(filepath.Join(pg.DataDir(), dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !relFile.MatchString(d.Name()) {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for blk := 0; blk+pgdata.BlockSize <= len(b); blk += pgdata.BlockSize {
				page := b[blk : blk+pgdata.BlockSize]
				if pgdata.PageIsNew(page) {
					continue
				}
				n := pgdata.BlockNumber(blk / pgdata.BlockSize)
				stored := binary.LittleEndian.Uint16(page[8:])
				if got := pgdata.PageChecksum(page, n); got != stored {
					t.Errorf("%s block %d: PageChecksum %d, stored %d", p, n, got, stored)
				}
				// SetPageChecksum on a copy with a stale checksum puts it back.
				c := append([]byte(nil), page...)
				binary.LittleEndian.PutUint16(c[8:], stored^0x5555)
				pgdata.SetPageChecksum(c, n)
				if got := binary.LittleEndian.Uint16(c[8:]); got != stored {
					t.Errorf("%s block %d: SetPageChecksum set %d, want %d", p, n, got, stored)
				}
				if !movedChecked && n > 0 {
					movedChecked = true
					if pgdata.PageChecksum(page, n+1) == stored {
						t.Errorf("%s block %d: the checksum as block %d is the same: the block number is not mixed in", p, n, n+1)
					}
				}
				pages++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if pages < 1000 {
		t.Fatalf("checked only %d pages: the cluster has too few initialized pages", pages)
	}
	t.Logf("%d pages checked", pages)
}
