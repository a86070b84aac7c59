// Package zenithtest is the fixture for integration tests that run the
// real zenith binary: Binary finds or builds it. (It grows into the
// whole-environment fixture, zenithtest.New(t), with the page server,
// safekeepers and compute nodes.)
//
// What it must never do: leave processes behind after a test, or hand a
// test a binary built from anything but the checkout under test (or the
// one $ZENITH_BIN names).
package zenithtest
