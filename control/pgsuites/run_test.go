package pgsuites

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// output is pg_regress's output as PostgreSQL 15 prints it.
const output = `============== dropping database "regression"         ==============
============== running regression test queries        ==============
test test_setup                   ... ok          321 ms
test tablespace                   ... FAILED (test process exited with exit code 2)      246 ms
parallel group (3 tests):  char boolean random
     boolean                      ... ok          145 ms
     char                         ... FAILED      532 ms
     random                       ... failed (ignored)      12 ms
test copy.sub                     ... ok           12 ms

=======================
 2 of 5 tests failed, 1 of these failures ignored.
=======================
`

func TestParseOutcomes(t *testing.T) {
	passed, failed, ignored := parseOutcomes(output)
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"passed", passed, []string{"test_setup", "boolean", "copy.sub"}},
		{"failed", failed, []string{"tablespace", "char"}},
		{"ignored", ignored, []string{"random"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestSplitDiffs(t *testing.T) {
	diffs := `diff -U3 /src/expected/char.out /out/results/char.out
--- /src/expected/char.out	2026-05-11 19:49:58.000000000 +0000
+++ /out/results/char.out	2026-12-02 22:22:18.768040708 +0000
@@ -1 +1 @@
-a
+b
diff -U3 /src/expected/collate.icu.utf8_1.out /out/results/collate.icu.utf8.out
--- /src/expected/collate.icu.utf8_1.out
+++ /out/results/collate.icu.utf8.out
@@ -1 +1 @@
-c
+d
`
	got := splitDiffs(diffs)
	if len(got) != 2 || !strings.HasSuffix(got["char"], "+b\n") || !strings.HasPrefix(got["collate.icu.utf8"], "diff -U3") || !strings.HasSuffix(got["collate.icu.utf8"], "+d\n") {
		t.Errorf("splitDiffs = %q", got)
	}
}

func TestCompare(t *testing.T) {
	stock := &Result{Failed: []string{"copy", "rules"}, Ignored: []string{"random"}}
	compute := &Result{Failed: []string{"copy", "tablespace", "random"}}
	onlyCompute, onlyStock := Compare(compute, stock)
	if !slices.Equal(onlyCompute, []string{"tablespace"}) || !slices.Equal(onlyStock, []string{"rules"}) {
		t.Errorf("Compare = %q, %q; want [tablespace], [rules]", onlyCompute, onlyStock)
	}
}

func TestWriteSchedule(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "parallel_schedule")
	if err := os.WriteFile(src, []byte("# comment\ntest: test_setup\ntest: tablespace\ntest: a tablespace b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := writeSchedule(src, dir, []string{"tablespace"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "# comment\ntest: test_setup\ntest: a b\n\n"; got != want {
		t.Errorf("schedule = %q, want %q", got, want)
	}
}
