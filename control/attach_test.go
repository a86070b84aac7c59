package control_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
)

// TestTenantDetachAttach detaches the default tenant (everything goes to
// remote storage, nothing stays on the page server's disk) and attaches
// it again at a new generation: a re-created compute and a branch made
// before dump as they did before the detach. A running compute refuses
// the detach without --force; an unknown tenant's attach says so.
func TestTenantDetachAttach(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 1})
	tenant := defaultTenant(t, env)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE acct (id int PRIMARY KEY, balance bigint, note text)")
	exec1(t, conn, "INSERT INTO acct SELECT g, g * 10, md5(g::text) FROM generate_series(1, 20000) g")
	lsn := queryString(t, conn, "SELECT pg_current_wal_insert_lsn()::text")
	env.Zenith("branch", "before", "main@"+lsn)
	wantBefore := dumpAll(t, pg)
	exec1(t, conn, "UPDATE acct SET balance = balance + 1 WHERE id % 7 = 0")
	exec1(t, conn, "CREATE INDEX acct_note ON acct (note)")
	want := dumpAll(t, pg)
	conn.Close(t.Context())

	if _, errOut, err := env.Run("tenant", "detach", tenant); err == nil || !strings.Contains(errOut, "--force") {
		t.Errorf("tenant detach with a running compute: err %v, stderr %q; want a refusal naming --force", err, errOut)
	}
	pg.Stop()
	out := env.Zenith("tenant", "detach", tenant)
	if !strings.Contains(out, "detached tenant "+tenant) {
		t.Errorf("zenith tenant detach printed %q", out)
	}
	if out := env.Zenith("tenant", "list"); strings.Contains(out, tenant) {
		t.Errorf("zenith tenant list after detach still shows %s:\n%s", tenant, out)
	}
	if _, err := os.Stat(filepath.Join(env.RepoDir, "pageserver", "tenants", tenant)); !os.IsNotExist(err) {
		t.Errorf("the tenant's directory after detach: %v, want it gone", err)
	}
	if _, errOut, err := env.Run("tenant", "detach", tenant); err == nil || !strings.Contains(errOut, "does not hold tenant") {
		t.Errorf("second detach: err %v, stderr %q; want it to say the page server does not hold the tenant", err, errOut)
	}

	out = env.Zenith("tenant", "attach", tenant)
	if !strings.Contains(out, "attached tenant "+tenant+" at generation 2 (2 timelines)") {
		t.Errorf("zenith tenant attach printed %q, want generation 2 with 2 timelines", out)
	}
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("after detach and attach: pg_dumpall of main: %v", err)
	}
	bpg := env.Postgres.CreateStart("before")
	if err := pgdump.Compare(dumpAll(t, bpg), wantBefore).Err(); err != nil {
		t.Errorf("after detach and attach: pg_dumpall of branch before: %v", err)
	}
	bpg.Destroy()
	pg.Destroy()

	// Attaching it again where it is attached takes a newer generation.
	if out := env.Zenith("tenant", "attach", tenant); !strings.Contains(out, "at generation 3") {
		t.Errorf("attach of an attached tenant printed %q, want generation 3", out)
	}
	unknown := "0123456789abcdef0123456789abcdef"
	if _, errOut, err := env.Run("tenant", "attach", unknown); err == nil || !strings.Contains(errOut, "not in the page server's remote storage") {
		t.Errorf("attach of an unknown tenant: err %v, stderr %q; want it to say the tenant is not in remote storage", err, errOut)
	}
	// The unknown tenant is not re-attached at the next start.
	env.Zenith("pageserver", "stop")
	if _, errOut, err := env.Run("pageserver", "start"); err != nil {
		t.Errorf("pageserver start after a failed attach: %v\n%s", err, errOut)
	}
}
