// Package zenithtest is the fixture for integration tests that run the
// real zenith binary, the way a user works:
//
//	env := zenithtest.New(t, nil)                // zenith init + start, runtime ports
//	pg := env.Postgres.CreateStart("main")       // zenith pg start main
//	conn := pg.Connect()                         // pgx, autocommit
//	env.Zenith("branch", "feature", "main@"+lsn) // any command
//
// Binary finds or builds the binary. Every environment lives in its own
// temporary directory ($ZENITH_REPO_DIR points into it).
//
// What it must never do: leave processes behind after a test (cleanup
// runs zenith stop --immediate, then kills by pid whatever of the
// environment's directory still runs), or hand a test a binary built from
// anything but the checkout under test (or the one $ZENITH_BIN names).
package zenithtest
