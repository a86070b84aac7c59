package pagecheck

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Relation is what the catalog says about a relfilenode.
type Relation struct {
	Name      string
	Kind      string // relkind
	AM        string // access method; "" for sequences
	Increment int64  // of a sequence
}

// Catalogs are the relations of every database a server lets the test
// connect to, by database OID (0 for shared catalogs) and relfilenode,
// and the databases created with STRATEGY WAL_LOG (whose visibility maps
// were copied page by page).
type Catalogs struct {
	Rels   map[[2]uint32]Relation
	WALLog map[uint32]bool
}

// ReadCatalogs reads the catalogs of a running server; connString gives
// the connection string of a database, walLog names the databases created
// with STRATEGY WAL_LOG.
func ReadCatalogs(ctx context.Context, t testing.TB, connString func(db string) string, walLog ...string) *Catalogs {
	t.Helper()
	conn, err := pgx.Connect(ctx, connString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	dbs := map[string]uint32{}
	rows, err := conn.Query(ctx, "SELECT datname, oid FROM pg_database WHERE datallowconn")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		var oid uint32
		if err := rows.Scan(&name, &oid); err != nil {
			t.Fatal(err)
		}
		dbs[name] = oid
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	c := &Catalogs{Rels: map[[2]uint32]Relation{}, WALLog: map[uint32]bool{}}
	for name, oid := range dbs {
		if slices.Contains(walLog, name) {
			c.WALLog[oid] = true
		}
		dconn, err := pgx.Connect(ctx, connString(name))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := dconn.Query(ctx, `
			SELECT pg_relation_filenode(c.oid)::int8, c.relisshared, c.relname, c.relkind::text,
			       coalesce(am.amname, ''), coalesce(s.seqincrement, 0)
			FROM pg_class c
			LEFT JOIN pg_am am ON am.oid = c.relam
			LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
			WHERE pg_relation_filenode(c.oid) IS NOT NULL`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var node int64
			var shared bool
			var ri Relation
			if err := rows.Scan(&node, &shared, &ri.Name, &ri.Kind, &ri.AM, &ri.Increment); err != nil {
				t.Fatal(err)
			}
			db := oid
			if shared {
				db = 0
			}
			c.Rels[[2]uint32{db, uint32(node)}] = ri
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		dconn.Close(ctx)
	}
	return c
}

// Report logs a tally, one count and key a line, sorted by key.
func Report(t testing.TB, what string, tally map[string]int) {
	t.Helper()
	keys := make([]string, 0, len(tally))
	for k := range tally {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", what)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %7d  %s", tally[k], k)
	}
	t.Log(b.String())
}
