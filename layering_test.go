package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// module is the import path every package of this repository starts with.
const module = "github.com/zenithdb/zenith"

// layers is the layering rule of docs/architecture.md, lowest first: a
// package (and its tests) may import only packages of an earlier row. Tests
// may also import the package's own sub-packages (pgcluster's tests use
// pgcluster/pgtest from the external test package), and the pairs in
// testOnly.
// Every package of the module must be listed: a new package is placed here
// (and in docs/architecture.md) when it is created.
var layers = []struct {
	name     string
	packages []string
}{
	{"ports for servers about to listen", []string{"repo/netport"}},
	{"PostgreSQL the program; file plumbing; ids; config files; tars", []string{"repo/pgcluster", "repo/vfs", "repo/id", "repo/tomlconf", "repo/tarfile", "repo/memstat"}},
	{"a throw-away PostgreSQL or S3 server for tests; pg_dumpall comparison; tokens and TLS", []string{"repo/pgcluster/pgtest", "repo/pgcluster/pgdump", "repo/remote/s3test", "repo/auth"}},
	{"PostgreSQL's formats", []string{"repo/pgdata"}},
	{"formats built on them; WAL segment files; WAL oracles and workloads", []string{"repo/key", "repo/value", "repo/walseg", "repo/pgcluster/pgwaldump"}},
	{"test workloads; keys, tokens and a CA for auth tests", []string{"repo/pgcluster/workload", "repo/auth/authtest"}},
	{"layer files", []string{"repo/layer", "repo/remote"}},
	{"the layer map", []string{"repo/layermap"}},
	{"libraries: repository, protocol, redo", []string{"repo", "pgwire", "walredo"}},
	{"the page service's API, for its client and server", []string{"pageserver/api"}},
	{"fixtures of the page server's packages' tests", []string{"pageserver/pstest"}},
	{"the data-directory model", []string{"pageserver/datadir"}},
	{"WAL ingest and import into the data-directory model", []string{"pageserver/walingest"}},
	{"basebackups of the data-directory model", []string{"pageserver/basebackup"}},
	{"the WAL receiver and its raw-WAL store", []string{"pageserver/walreceiver"}},
	{"the page service: commands and the page stream over libpq", []string{"pageserver/pageservice"}},
	{"the HTTP API: management as JSON, and the metrics", []string{"pageserver/httpapi"}},
	{"services", []string{"safekeeper", "pageserver"}},
	{"the page oracle: the page server's pages against a data directory's", []string{"pageserver/pagecheck"}},
	{"a lazy compute's data directory through FUSE", []string{"control/lazyfs"}},
	{"the binary's test fixture (imports only repo/netport of zenith)", []string{"control/zenithtest"}},
	{"the control plane", []string{"control"}},
	{"PostgreSQL's own test suites on a compute", []string{"control/pgsuites"}},
	{"the binary", []string{""}},
}

// topLevel is the same rule for the top-level directories of the design
// (section 2), lowest first: whatever the table above says, no package
// imports a directory of a later row (nothing below control imports
// control/..., as walredo once imported control/pgcluster).
var topLevel = [][]string{
	{"repo"},
	{"pgwire", "walredo"},
	{"safekeeper", "pageserver"},
	{"control"},
	{""},
}

// testOnly are the imports that only tests may make across the rule, with
// the reason each is allowed.
var testOnly = map[[2]string]string{
	// The page server's receiver tests run real safekeepers in process;
	// the page server itself never imports a safekeeper.
	{"pageserver", "safekeeper"}: "tests run real safekeepers",
	// zenithtest imports no zenith package but repo/netport: it builds and runs the binary,
	// which the page server's end-to-end test runs as a process.
	{"pageserver", "control/zenithtest"}: "the end-to-end test runs the binary",
}

// goPackage is what this test reads of `go list -json`.
type goPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func TestNoPackageImportsUpward(t *testing.T) {
	rank := map[string]int{}
	for i, l := range layers {
		for _, p := range l.packages {
			rank[p] = i
		}
	}
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list -json ./...: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	seen := 0
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		seen++
		from := relative(p.ImportPath)
		r, ok := rank[from]
		if dirRank(from) == len(topLevel) {
			t.Errorf("package %q is outside the top-level layout (topLevel in layering_test.go)", p.ImportPath)
		}
		if !ok {
			t.Errorf("package %q is not in the layer table: add it to layers in layering_test.go and to docs/architecture.md", p.ImportPath)
			continue
		}
		reported := map[string]bool{}
		check := func(imports []string, test bool) {
			for _, imp := range imports {
				if imp != module && !strings.HasPrefix(imp, module+"/") {
					continue
				}
				to := relative(imp)
				if to == from {
					continue // an external test package importing its own package
				}
				tr, ok := rank[to]
				if !ok {
					continue // reported when the loop reaches it
				}
				if tr < r && dirRank(to) <= dirRank(from) {
					continue
				}
				if _, ok := testOnly[[2]string{from, to}]; ok && test {
					continue
				}
				if test && strings.HasPrefix(to, from+"/") {
					continue
				}
				if reported[to] {
					continue
				}
				reported[to] = true
				what := "imports"
				if test {
					what = "tests import"
				}
				if tr >= r {
					t.Errorf("%s %s %s: %s (%s) is not below %s (%s)", name(from), what, name(to), name(to), layers[tr].name, name(from), layers[r].name)
				} else {
					t.Errorf("%s %s %s: a directory above its own (control > services > pgwire, walredo > repo)", name(from), what, name(to))
				}
			}
		}
		check(p.Imports, false)
		check(p.TestImports, true)
		check(p.XTestImports, true)
	}
	if seen < len(rank)/2 {
		t.Fatalf("go list found %d packages, the table names %d", seen, len(rank))
	}
}

// relative is an import path of this module without the module path ("" for
// the module's root package).
func relative(importPath string) string {
	return strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
}

// dirRank is the row of topLevel that holds a relative package path's
// top-level directory.
func dirRank(p string) int {
	top, _, _ := strings.Cut(p, "/")
	for i, row := range topLevel {
		for _, d := range row {
			if d == top {
				return i
			}
		}
	}
	return len(topLevel)
}

// name is how a message names a relative package path.
func name(p string) string {
	if p == "" {
		return "main"
	}
	return p
}
