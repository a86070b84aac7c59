package pgsuites_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/pgsuites"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// TestSuitesOnTarget runs the suites of $ZENITH_PGSUITES (both by
// default) against a server that is already running, named by the
// connection string in $ZENITH_PGSUITES_TARGET (postgresql://user@host:port),
// and reports their outcome; it is skipped without it. It checks nothing
// against stock PostgreSQL (TestSuites does): it is how scripts/bench-memory
// --suites loads a compute of its own repository with the suites. It fails
// only when a driver could not run a suite.
func TestSuitesOnTarget(t *testing.T) {
	connString := os.Getenv("ZENITH_PGSUITES_TARGET")
	if connString == "" {
		t.Skip("ZENITH_PGSUITES_TARGET names no server to run the suites against")
	}
	src := sources(t)
	binDir, err := pgcluster.FindBinDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	target := computeTarget(t, connString, binDir)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	o := pgsuites.RunOptions{StatementTimeout: statementTimeout, Exclude: exclude(t)}
	out := outputDir(t)
	for _, s := range chosenSuites(t) {
		oi := o
		oi.OutputDir = filepath.Join(out, s.Name)
		r, err := pgsuites.Run(ctx, s, src, target, oi)
		if err != nil {
			t.Fatalf("%s suite on %s: %v", s.Name, connString, err)
		}
		t.Log(r.Summary())
	}
}
