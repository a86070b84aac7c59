package control_test

import (
	"context"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestCommitsAfterCreateTablespace: without safekeepers the page server is
// the compute's synchronous standby, so a commit waits for it. CREATE
// TABLESPACE used to stop its WAL receiver ("unsupported WAL record") and
// every commit after it waited forever. Each statement here must be
// acknowledged within its statement_timeout (a commit that is not gets
// PostgreSQL's "canceling wait for synchronous replication" warning),
// and a compute re-created from the page server has the rows.
func TestCommitsAfterCreateTablespace(t *testing.T) {
	env := zenithtest.New(t, nil)
	pg := env.Postgres.CreateStart("main")
	conn, notices := connectNoticing(t, pg.ConnString)
	acked := func(sql string) {
		t.Helper()
		exec1(t, conn, sql)
		if n := notices(); len(n) > 0 {
			t.Fatalf("%s: the commit was not acknowledged by the page server within the statement timeout: %v", sql, n)
		}
	}
	acked("SET statement_timeout = '20s'")
	acked("SET allow_in_place_tablespaces = on")
	acked("CREATE TABLESPACE regress_ts LOCATION ''")
	acked("CREATE TABLE t (id int) TABLESPACE regress_ts")
	acked("INSERT INTO t SELECT generate_series(1, 100)")
	acked("DROP TABLE t")
	acked("DROP TABLESPACE regress_ts")
	acked("CREATE TABLE after (id int)")
	acked("INSERT INTO after VALUES (1)")
	conn.Close(context.Background())
	pg.Destroy()

	pg = env.Postgres.CreateStart("main")
	if got := queryString(t, pg.Connect(), "SELECT count(*)::text || ' ' || (SELECT count(*) FROM pg_tablespace) FROM after"); got != "1 2" {
		t.Errorf("re-created compute: %q rows and tablespaces, want 1 row and the 2 built-in tablespaces", got)
	}
}

// connectNoticing connects to database postgres, collecting the notices
// and warnings the server sends; notices returns and forgets them.
func connectNoticing(t *testing.T, connString string) (conn *pgx.Conn, notices func() []string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(connString + "?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { got = append(got, n.Severity+": "+n.Message) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, func() []string { n := got; got = nil; return n }
}

// TestTablespaces runs the tablespace workload on a compute (in-place
// tablespaces and one with a LOCATION; relations, indexes and databases
// in them; every way of moving them; DROP TABLESPACE; DROP DATABASE
// across tablespaces) and then:
//   - the compute re-created from the page server and a compute on a
//     branch at the LSN after the workload dump (pg_dumpall) what the
//     live compute dumped, except the LOCATION tablespace's location,
//     which on each new compute is a directory of its own node
//     (tablespaces/<OID>, linked from pg_tblspc/<OID>), and a sequence
//     up to SEQ_LOG_VALS ahead, as after any recovery from the WAL;
//   - the re-created compute has the same files in each tablespace
//     directory as the live one had (relation files, PG_VERSION and
//     pg_filenode.map where PostgreSQL put them), and keeps working
//     with them: ALTER DATABASE SET TABLESPACE back to pg_default, a new
//     tablespace made and dropped.
func TestTablespaces(t *testing.T) {
	env := zenithtest.New(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Eager: the test reads the stopped node's data directory, which a
	// lazy node serves only while it runs.
	pg := env.Postgres.CreateStart("main", "--eager")
	user, err := pgcluster.ServerUser()
	if err != nil {
		t.Fatal(err)
	}
	location := filepath.Join(env.Dir, "tablespace")
	if err := pgcluster.PrepareDir(location, user); err != nil {
		t.Fatal(err)
	}
	if err := workload.Tablespaces(ctx, pg.ConnString+"?sslmode=disable", location); err != nil {
		t.Fatal(err)
	}
	conn := pg.Connect()
	lsn := queryString(t, conn, "SELECT pg_current_wal_insert_lsn()::text")
	oid := queryString(t, conn, "SELECT oid::text FROM pg_tablespace WHERE spcname = '"+workload.TablespaceLocation+"'")
	inPlace := queryString(t, conn, "SELECT oid::text FROM pg_tablespace WHERE spcname = '"+workload.TablespaceInPlace+"'")
	if got := queryString(t, conn, "SELECT pg_tablespace_location("+oid+")"); got != location {
		t.Errorf("live compute: pg_tablespace_location = %q, want %q", got, location)
	}
	want := dumpAll(t, pg)
	if !strings.Contains(want, "LOCATION '"+location+"'") {
		t.Fatalf("pg_dumpall of the live compute does not create the tablespace at %s: the masking below would hide nothing", location)
	}
	env.Zenith("branch", "after_tablespaces", "main@"+lsn)
	conn.Close(ctx)
	pg.Stop()
	liveNode := filepath.Join(env.RepoDir, "pgdatadirs", "tenants")
	liveFiles := tablespaceFiles(t, location)
	inPlaceFiles := tablespaceFiles(t, nodeDataDir(t, liveNode, "main", filepath.Join("pg_tblspc", inPlace)))
	pg.Destroy()

	pg = env.Postgres.CreateStart("main")
	conn = pg.Connect()
	nodeTablespace := filepath.Join(nodeDir(t, liveNode, "main"), "tablespaces", oid)
	if got := queryString(t, conn, "SELECT pg_tablespace_location("+oid+")"); got != nodeTablespace {
		t.Errorf("re-created compute: pg_tablespace_location = %q, want its node's %q", got, nodeTablespace)
	}
	if err := pgdump.Compare(workload.MaskTablespaceLocation(dumpAll(t, pg)), workload.MaskTablespaceLocation(want)).Err(); err != nil {
		t.Errorf("pg_dumpall of the re-created compute and of the live one: %v", err)
	}
	if got := tablespaceFiles(t, nodeTablespace); !slices.Equal(got, liveFiles) {
		t.Errorf("re-created compute's files in tablespace %s:\n%v\nthe live compute's:\n%v", workload.TablespaceLocation, got, liveFiles)
	}
	if got := tablespaceFiles(t, nodeDataDir(t, liveNode, "main", filepath.Join("pg_tblspc", inPlace))); !slices.Equal(got, inPlaceFiles) {
		t.Errorf("re-created compute's files in tablespace %s:\n%v\nthe live compute's:\n%v", workload.TablespaceInPlace, got, inPlaceFiles)
	}
	exec1(t, conn, "ALTER DATABASE tsw_move SET TABLESPACE pg_default")
	exec1(t, conn, "SET allow_in_place_tablespaces = on")
	exec1(t, conn, "CREATE TABLESPACE tsw_later LOCATION ''")
	exec1(t, conn, "CREATE TABLE later (id int) TABLESPACE tsw_later")
	exec1(t, conn, "INSERT INTO later SELECT generate_series(1, 10)")
	exec1(t, conn, "DROP TABLE later")
	exec1(t, conn, "DROP TABLESPACE tsw_later")
	exec1(t, conn, "INSERT INTO tsw_a (id, v) VALUES (-1, 'after')")

	bpg := env.Postgres.CreateStart("after_tablespaces")
	if err := pgdump.Compare(workload.MaskTablespaceLocation(dumpAll(t, bpg)), workload.MaskTablespaceLocation(want)).Err(); err != nil {
		t.Errorf("pg_dumpall of branch after_tablespaces and of main at %s: %v", lsn, err)
	}
	bconn := bpg.Connect()
	if got := queryString(t, bconn, "SELECT pg_tablespace_location("+oid+")"); got != filepath.Join(nodeDir(t, liveNode, "after_tablespaces"), "tablespaces", oid) {
		t.Errorf("branch's compute: pg_tablespace_location = %q, want in its own node directory", got)
	}
}

// dumpAll returns pg_dumpall's output for a compute.
func dumpAll(t *testing.T, pg *zenithtest.Postgres) string {
	t.Helper()
	bin, err := pgcluster.FindBinDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "pg_dumpall"), "--no-sync", "--restrict-key=zenithtest", "-d", pg.ConnString+"?sslmode=disable").Output()
	if err != nil {
		t.Fatalf("pg_dumpall %s: %v", pg.ConnString, err)
	}
	return string(out)
}

// nodeDir finds the directory of compute node name under the tenants'
// node directories.
func nodeDir(t *testing.T, tenants, name string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(tenants, "*", name))
	if err != nil || len(m) != 1 {
		t.Fatalf("node %s: %v %v", name, m, err)
	}
	return m[0]
}

func nodeDataDir(t *testing.T, tenants, name, rel string) string {
	return filepath.Join(nodeDir(t, tenants, name), "pgdata", rel)
}

// tablespaceFiles lists the files and directories under a tablespace's
// directory, with each relation file's size in blocks; free-space maps
// are left out (never WAL-logged, a compute rebuilds them).
func tablespaceFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasSuffix(rel, "_fsm") {
			return nil
		}
		if d.IsDir() {
			files = append(files, rel+"/")
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if _, _, _, perr := pgdata.ParseRelationPath("pg_tblspc/1/" + filepath.ToSlash(rel)); perr == nil {
			rel += " " + strconv.FormatInt(info.Size()/pgdata.BlockSize, 10)
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
