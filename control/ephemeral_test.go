package control_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// TestEphemeralDatabase is a CI job's life: one command makes a writable
// database from main's data, the job writes to it, one command throws it
// away; main never sees the job's writes, and no node, process or data
// directory of it is left (the branch is: zenith cannot delete branches).
func TestEphemeralDatabase(t *testing.T) {
	env := zenithtest.New(t, nil)
	main := env.Postgres.CreateStart("main")
	exec1(t, main.Connect(), "CREATE TABLE fixture (v text); INSERT INTO fixture VALUES ('from main')")
	main.Stop() // its WAL is in the page server: the branch point includes the row

	ci := env.Postgres.CreateStart("main", "--ephemeral", "--name", "ci-1")
	conn := ci.Connect()
	if got := queryString(t, conn, "SELECT v FROM fixture"); got != "from main" {
		t.Fatalf("ephemeral database reads %q, want main's row", got)
	}
	exec1(t, conn, "INSERT INTO fixture VALUES ('from the job')")
	conn.Close(t.Context())

	// A second one with a made-up name, while the first runs.
	out, errOut, err := env.Run("pg", "start", "main", "--ephemeral")
	if err != nil {
		t.Fatalf("pg start main --ephemeral: %v\n%s", err, errOut)
	}
	if !strings.HasPrefix(out, "postgresql://") || strings.Count(out, "\n") != 1 {
		t.Errorf("stdout %q, want only the connection string", out)
	}
	if !strings.Contains(errOut, "throw it away with: zenith pg stop ephemeral-") {
		t.Errorf("stderr %q does not say how to throw it away", errOut)
	}
	auto := errOut[strings.Index(errOut, "zenith pg stop ")+len("zenith pg stop "):]
	auto = strings.Fields(auto)[0]

	for _, name := range []string{"ci-1", auto} {
		env.Zenith("pg", "stop", name, "--destroy", "--immediate")
	}
	var nodes []struct{ Name string }
	if err := json.Unmarshal([]byte(env.Zenith("pg", "list", "--json")), &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name != "main" {
			t.Errorf("node %s left after --destroy", n.Name)
		}
	}
	main2 := env.Postgres.CreateStart("main")
	if got := count(t, main2.Connect(), "fixture"); got != 1 {
		t.Errorf("main has %d rows in fixture, want 1: the job's write leaked", got)
	}
	mustFail(t, env, "--ephemeral makes a writable branch", "pg", "start", "main", "--ephemeral", "--lsn", "0/1000000")
}
