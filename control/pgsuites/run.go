package pgsuites

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// Suite is one of PostgreSQL's test suites: its driver and schedule.
type Suite struct {
	// Name is "regress" or "isolation".
	Name string
	// driver is the driver's path under the installation's pgxs directory.
	driver string
	// dir is the suite's directory in a Sources tree (inputdir).
	dir func(Sources) string
	// schedule is the schedule file's name in dir.
	schedule string
}

var (
	// Regress is the core regression suite: pg_regress, parallel_schedule.
	Regress = Suite{Name: "regress", driver: "src/test/regress/pg_regress", dir: Sources.RegressDir, schedule: "parallel_schedule"}
	// Isolation is the isolation suite: pg_isolation_regress,
	// isolation_schedule.
	Isolation = Suite{Name: "isolation", driver: "src/test/isolation/pg_isolation_regress", dir: Sources.IsolationDir, schedule: "isolation_schedule"}
)

// Target is the running server a suite is run against.
type Target struct {
	Host string
	Port int
	// User is the role the drivers connect as: a superuser.
	User string
	// BinDir holds the PostgreSQL 15 programs (psql; the drivers are
	// found under its ../lib/pgxs, as Debian lays them out).
	BinDir string
}

// RunOptions tune Run.
type RunOptions struct {
	// OutputDir receives results/, regression.out and regression.diffs.
	// It is given to the server's OS user: tests make the server write
	// files there (COPY ... TO).
	OutputDir string
	// StatementTimeout bounds each statement of each test (PGOPTIONS), so
	// that one statement that never returns shows as that test's failure
	// instead of stopping the suite; zero means none.
	StatementTimeout time.Duration
	// MaxConnections limits the driver's concurrent connections (0: the
	// schedule's own parallelism).
	MaxConnections int
	// Exclude names tests left out of the schedule (a test whose known
	// failure would keep the others from running, such as one that hangs).
	Exclude []string
}

// Result is what one run of a suite reported.
type Result struct {
	Suite Suite
	// Passed and Failed are the tests by outcome, in schedule order.
	// A test the schedule marks "ignore" that failed is in Ignored.
	Passed, Failed, Ignored []string
	// Diffs are regression.diffs' sections by test.
	Diffs map[string]string
	// Output is the driver's own output.
	Output string
	// Elapsed is the run's wall time.
	Elapsed time.Duration
}

// ErrDriver is wrapped by Run's error when the driver could not run the
// suite at all (exit status 2: server unreachable, bad options), as
// opposed to tests that failed.
var ErrDriver = errors.New("test driver failed")

// Run runs suite s of src against target and returns its result. Failing
// tests are not an error: they are in Result.Failed. The driver runs as
// the server's OS user in its own process group, which is killed when ctx
// ends.
func Run(ctx context.Context, s Suite, src Sources, target Target, o RunOptions) (*Result, error) {
	driver := filepath.Join(target.BinDir, "..", "lib", "pgxs", filepath.FromSlash(s.driver))
	if _, err := os.Stat(driver); err != nil {
		return nil, fmt.Errorf("%w: %s not found (postgresql-server-dev-15 installs it): %v", ErrDriver, s.driver, err)
	}
	user, err := pgcluster.ServerUser()
	if err != nil {
		return nil, err
	}
	// The parents must stay searchable by the server's OS user
	// (PrepareDir makes missing ones 0700).
	if err := os.MkdirAll(filepath.Dir(o.OutputDir), 0o755); err != nil {
		return nil, err
	}
	if err := pgcluster.PrepareDir(o.OutputDir, user); err != nil {
		return nil, err
	}
	// Not --use-existing: that makes the driver use the database as it
	// is, and create none. Without it and without --temp-instance (make
	// installcheck's way) it drops and creates the suite's database with
	// the settings the expected output assumes (template0, lc_messages C,
	// ...) on the running server.
	args := []string{
		"--host=" + target.Host, "--port=" + strconv.Itoa(target.Port), "--user=" + target.User,
		"--bindir=" + target.BinDir,
		"--inputdir=" + s.dir(src), "--outputdir=" + o.OutputDir,
		"--dlpath=" + src.LibDir(),
	}
	if o.MaxConnections > 0 {
		args = append(args, "--max-connections="+strconv.Itoa(o.MaxConnections))
	}
	schedule := filepath.Join(s.dir(src), s.schedule)
	if len(o.Exclude) > 0 {
		if schedule, err = writeSchedule(schedule, o.OutputDir, o.Exclude); err != nil {
			return nil, err
		}
	}
	args = append(args, "--schedule="+schedule)
	cmd := exec.Command(driver, args...)
	cmd.Dir = o.OutputDir
	pgcluster.RunAs(cmd, user)
	if o.StatementTimeout > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("PGOPTIONS=-c statement_timeout=%d", o.StatementTimeout.Milliseconds()))
	}
	cmd.SysProcAttr.Setpgid = true
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %v", ErrDriver, s.driver, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		// The driver, its psql or isolationtester children: all of them.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return nil, fmt.Errorf("%s suite did not finish: %w; its output so far:\n%s", s.Name, ctx.Err(), lastLines(out.String(), 30))
	}
	// A driver that exited leaves no child behind normally; make sure.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	r := &Result{Suite: s, Output: out.String(), Elapsed: time.Since(start)}
	r.Passed, r.Failed, r.Ignored = parseOutcomes(r.Output)
	var exit *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &exit) && exit.ExitCode() == 1:
	default:
		return r, fmt.Errorf("%w: %s: %v\n%s", ErrDriver, s.driver, runErr, lastLines(r.Output, 30))
	}
	if len(r.Passed)+len(r.Failed)+len(r.Ignored) == 0 {
		return r, fmt.Errorf("%w: %s reported no test:\n%s", ErrDriver, s.driver, lastLines(r.Output, 30))
	}
	diffs, err := os.ReadFile(filepath.Join(o.OutputDir, "regression.diffs"))
	if err != nil && !os.IsNotExist(err) {
		return r, err
	}
	r.Diffs = splitDiffs(string(diffs))
	return r, nil
}

// writeSchedule writes a copy of schedule into dir without the tests in
// exclude, and returns its path.
func writeSchedule(schedule, dir string, exclude []string) (string, error) {
	b, err := os.ReadFile(schedule)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "test:" {
			out.WriteString(line + "\n")
			continue
		}
		kept := slices.DeleteFunc(f[1:], func(n string) bool { return slices.Contains(exclude, n) })
		if len(kept) > 0 {
			out.WriteString("test: " + strings.Join(kept, " ") + "\n")
		}
	}
	p := filepath.Join(dir, "schedule")
	return p, os.WriteFile(p, []byte(out.String()), 0o644)
}

// outcomeLine matches a test's line in pg_regress's output (PostgreSQL
// 15's format): "test name ... ok 12 ms" for a test alone, "     name
// ... FAILED" inside a parallel group, "failed (ignored)" for a test the
// schedule ignores.
var outcomeLine = regexp.MustCompile(`^(?:test +| +)(\S+) +\.\.\. (ok|FAILED|failed \(ignored\))`)

func parseOutcomes(out string) (passed, failed, ignored []string) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := outcomeLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		switch m[2] {
		case "ok":
			passed = append(passed, m[1])
		case "FAILED":
			failed = append(failed, m[1])
		default:
			ignored = append(ignored, m[1])
		}
	}
	return passed, failed, ignored
}

// diffHeader starts a test's section of regression.diffs.
var diffHeader = regexp.MustCompile(`(?m)^diff .* (\S+)$`)

// splitDiffs splits regression.diffs into its sections by test (the
// results file's name without .out).
func splitDiffs(diffs string) map[string]string {
	m := map[string]string{}
	idx := diffHeader.FindAllStringSubmatchIndex(diffs, -1)
	for i, loc := range idx {
		end := len(diffs)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		name := strings.TrimSuffix(filepath.Base(diffs[loc[2]:loc[3]]), ".out")
		m[name] += diffs[loc[0]:end]
	}
	return m
}

// Compare returns the tests that failed on got but not on want, and the
// ones that failed on want but not on got. Ignored tests count as failed.
func Compare(got, want *Result) (onlyGot, onlyWant []string) {
	g := append(slices.Clone(got.Failed), got.Ignored...)
	w := append(slices.Clone(want.Failed), want.Ignored...)
	for _, n := range g {
		if !slices.Contains(w, n) {
			onlyGot = append(onlyGot, n)
		}
	}
	for _, n := range w {
		if !slices.Contains(g, n) {
			onlyWant = append(onlyWant, n)
		}
	}
	return onlyGot, onlyWant
}

// Summary is one line: the suite, counts, and the failing tests.
func (r *Result) Summary() string {
	return fmt.Sprintf("%s: %d passed, %d failed %v, %d ignored-and-failed %v, in %v",
		r.Suite.Name, len(r.Passed), len(r.Failed), r.Failed, len(r.Ignored), r.Ignored, r.Elapsed.Round(time.Second))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
