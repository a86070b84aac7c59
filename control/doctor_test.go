package control_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// runDoctor runs `zenith doctor args...` with no repository, in a
// temporary directory, through wrap (e.g. unshare) when given, and
// returns its output and exit code.
func runDoctor(t *testing.T, wrap []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := zenithtest.Binary(t)
	dir := t.TempDir()
	argv := append(append(append([]string{}, wrap...), bin, "doctor"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZENITH_REPO_DIR="+filepath.Join(dir, ".zenith"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	t.Logf("%s: exit %d\n%s%s", strings.Join(argv, " "), code, out.String(), errOut.String())
	return out.String(), errOut.String(), code
}

// hasLine reports whether out has a line with the status and check name
// whose rest contains want.
func hasLine(out, status, name, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == status && strings.HasPrefix(strings.TrimSpace(l[len(status):]), name) && strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// TestDoctorOnThisMachine: everything zenith needs is here, and the
// embedded redo module really loads into the PostgreSQL found.
func TestDoctorOnThisMachine(t *testing.T) {
	out, _, code := runDoctor(t, nil)
	if code != 0 {
		t.Fatalf("zenith doctor exited %d on the test machine, want 0:\n%s", code, out)
	}
	for _, want := range []struct{ status, name, text string }{
		{"ok", "postgresql", pgcluster.DefaultBinDir},
		{"ok", "redo module", "loads"},
		{"ok", "ports", "127.0.0.1:64000"},
		{"ok", "disk", "free"},
	} {
		if !hasLine(out, want.status, want.name, want.text) {
			t.Errorf("no line %q %q ... %q in:\n%s", want.status, want.name, want.text, out)
		}
	}
	if !strings.Contains(out, "zenith can run here") {
		t.Errorf("no verdict line in:\n%s", out)
	}
}

// TestDoctorWithoutPostgreSQL hides PostgreSQL's programs two ways: a
// --pg-bin directory without them, and /usr/lib/postgresql covered by an
// empty directory in a private mount namespace (unshare, as root; nothing
// outside the doctor's process sees it). Each must be a clear "missing"
// line with the command that installs PostgreSQL, and exit status 1.
func TestDoctorWithoutPostgreSQL(t *testing.T) {
	empty := t.TempDir()
	cases := []struct {
		name string
		wrap []string
		args []string
	}{
		{name: "pg-bin", args: []string{"--pg-bin", empty}},
	}
	if unshare, err := exec.LookPath("unshare"); err == nil && os.Geteuid() == 0 {
		cases = append(cases, struct {
			name string
			wrap []string
			args []string
		}{name: "hidden", wrap: []string{unshare, "--mount", "--", "sh", "-c",
			`mount --bind "$0" /usr/lib/postgresql && PATH=/usr/sbin:/usr/bin:/sbin:/bin exec "$@"`, empty}})
	} else {
		t.Log("not root or no unshare: only the --pg-bin case runs")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runDoctor(t, tc.wrap, tc.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !hasLine(out, "missing", "postgresql", "PostgreSQL 15 not found") {
				t.Errorf("no 'missing postgresql ... PostgreSQL 15 not found' line in:\n%s", out)
			}
			if !strings.Contains(out, "fix: ") || !strings.Contains(out, "apt-get install postgresql-15") {
				t.Errorf("no fix naming apt-get install postgresql-15 in:\n%s", out)
			}
			if !hasLine(out, "missing", "redo module", "no PostgreSQL 15 found") {
				t.Errorf("the redo module line does not say it could not be tried:\n%s", out)
			}
			if !strings.Contains(errOut, "required piece(s) missing") {
				t.Errorf("stderr %q has no verdict", errOut)
			}
		})
	}
}
