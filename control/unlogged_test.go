package control_test

import (
	"context"
	"testing"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// unloggedSchema creates an unlogged relation of every kind that has an
// init fork written to the WAL: a table with a primary key (btree), an
// index of every built-in access method and of contrib's bloom (generic
// WAL), an unlogged sequence (PostgreSQL 15) and a logged table next to
// them, then fills them.
var unloggedSchema = []string{
	"CREATE EXTENSION bloom",
	"CREATE UNLOGGED TABLE u (i int PRIMARY KEY, p point, r int4range, t text, a int[])",
	"CREATE INDEX u_hash ON u USING hash (i)",
	"CREATE INDEX u_gist ON u USING gist (p)",
	"CREATE INDEX u_spgist ON u USING spgist (r)",
	"CREATE INDEX u_gin ON u USING gin (a)",
	"CREATE INDEX u_brin ON u USING brin (i)",
	"CREATE INDEX u_bloom ON u USING bloom (t)",
	"CREATE UNLOGGED SEQUENCE useq",
	"CREATE TABLE logged (i int PRIMARY KEY)",
	"INSERT INTO u SELECT g, point(g, g), int4range(g, g + 10), 'row ' || g, ARRAY[g, g + 1] FROM generate_series(1, 1000) g",
	"SELECT nextval('useq') FROM generate_series(1, 50)",
	"INSERT INTO logged SELECT generate_series(1, 100)",
}

// TestUnloggedRelationsRecreate is issue 11's reproduction: a compute
// re-created on a branch with unlogged relations starts, and finds them
// as PostgreSQL does after a crash: empty, with working indexes, the
// sequence back at its start, and the logged data intact. Before init
// forks had their own redo path, `zenith pg start` failed with "xlog flush
// request ... is not satisfied" while redoing the init fork.
func TestUnloggedRelationsRecreate(t *testing.T) {
	env := zenithtest.New(t, nil)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	for _, s := range unloggedSchema {
		exec1(t, conn, s)
	}
	lsn := queryString(t, conn, "SELECT pg_current_wal_insert_lsn()::text")
	conn.Close(context.Background())
	pg.Destroy()

	pg = env.Postgres.CreateStart("main")
	checkUnloggedReset(t, pg)

	// A branch made after the unlogged relations exist starts too.
	env.Zenith("branch", "later", "main@"+lsn)
	checkUnloggedReset(t, env.Postgres.CreateStart("later"))
}

// checkUnloggedReset checks that pg's unlogged relations are empty and
// usable and its logged table intact.
func checkUnloggedReset(t *testing.T, pg *zenithtest.Postgres) {
	t.Helper()
	conn := pg.Connect()
	if got := count(t, conn, "u"); got != 0 {
		t.Errorf("%v: unlogged table u has %d rows, want 0 (reset as after a crash)", pg, got)
	}
	if got := count(t, conn, "logged"); got != 100 {
		t.Errorf("%v: logged table has %d rows, want 100", pg, got)
	}
	if got := queryString(t, conn, "SELECT nextval('useq')::text"); got != "1" {
		t.Errorf("%v: nextval of the unlogged sequence is %s, want 1 (reset)", pg, got)
	}
	// Every index works on the reset relation: fill it again and read it
	// through each one.
	exec1(t, conn, "INSERT INTO u SELECT g, point(g, g), int4range(g, g + 10), 'row ' || g, ARRAY[g, g + 1] FROM generate_series(1, 500) g")
	exec1(t, conn, "SET enable_seqscan = off")
	for _, q := range []struct{ name, sql, want string }{
		{"btree", "SELECT count(*)::text FROM u WHERE i = 7", "1"},
		{"hash", "SELECT count(*)::text FROM u WHERE i = 8", "1"},
		{"gist", "SELECT count(*)::text FROM u WHERE p <@ box '((0,0),(10,10))'", "10"},
		{"spgist", "SELECT count(*)::text FROM u WHERE r @> 5", "5"},
		{"gin", "SELECT count(*)::text FROM u WHERE a @> ARRAY[3]", "2"},
		{"brin", "SELECT count(*)::text FROM u WHERE i BETWEEN 100 AND 109", "10"},
		{"bloom", "SELECT count(*)::text FROM u WHERE t = 'row 9'", "1"},
	} {
		if got := queryString(t, conn, q.sql); got != q.want {
			t.Errorf("%v: %s through the %s index: %s, want %s", pg, q.sql, q.name, got, q.want)
		}
	}
	exec1(t, conn, "RESET enable_seqscan")
	if got := queryString(t, conn, "SELECT count(*)::text FROM (SELECT * FROM u ORDER BY i) s"); got != "500" {
		t.Errorf("%v: after refilling, u has %s rows, want 500", pg, got)
	}
}

// TestReplicationOriginsRecreate checks that the replication origins'
// progress survives the re-creation of a compute, as it survives a
// PostgreSQL restart: set with pg_replication_origin_advance (a
// ReplicationOrigin SET record), forgotten by a drop (DROP), and advanced
// by a commit of a session with an origin (a commit record carrying it).
// Before the page server kept pg_logical/replorigin_checkpoint, the
// re-created compute had no progress at all.
func TestReplicationOriginsRecreate(t *testing.T) {
	env := zenithtest.New(t, nil)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	for _, s := range []string{
		"CREATE TABLE t (i int)",
		"SELECT pg_replication_origin_create('o1')",
		"SELECT pg_replication_origin_create('o2')",
		"SELECT pg_replication_origin_create('o3')",
		"SELECT pg_replication_origin_advance('o1', '0/AB000000')",
		"SELECT pg_replication_origin_advance('o3', '0/1000')",
		"SELECT pg_replication_origin_drop('o3')",
		"SELECT pg_replication_origin_session_setup('o2')",
		"BEGIN",
		"SELECT pg_replication_origin_xact_setup('0/CD000000', now())",
		"INSERT INTO t VALUES (1)",
		"COMMIT",
		"SELECT pg_replication_origin_session_reset()",
	} {
		exec1(t, conn, s)
	}
	const status = "SELECT coalesce(string_agg(external_id || ' ' || remote_lsn, ', ' ORDER BY external_id), '') FROM pg_replication_origin_status"
	want := queryString(t, conn, status)
	if want != "o1 0/AB000000, o2 0/CD000000" {
		t.Fatalf("replication origins on the first compute: %q", want)
	}
	conn.Close(context.Background())
	pg.Destroy()

	pg = env.Postgres.CreateStart("main")
	if got := queryString(t, pg.Connect(), status); got != want {
		t.Errorf("replication origins after re-creating the compute: %q, want %q", got, want)
	}
}
