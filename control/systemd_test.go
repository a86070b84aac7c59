package control

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/auth"
)

// TestSystemdUnitsVerify writes the units of a repository with three
// safekeepers and checks them with systemd's own verifier, and checks
// what systemd-analyze cannot: restart on failure, the dedicated user,
// and the page server ordered after (so stopped before) every safekeeper.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		fmt.Fprintln(os.Stderr, "SKIP TestSystemdUnitsVerify: systemd-analyze not installed (apt-get install systemd); the units are NOT verified")
		t.Skip("systemd-analyze not installed (apt-get install systemd): the generated units are not verified")
	}
	cfg := DefaultConfig()
	cfg.Safekeepers.Count = 3
	repoDir := filepath.Join(t.TempDir(), "repo with space")
	e := &Env{Dir: repoDir, Config: cfg, Out: io.Discard, Progress: io.Discard}
	dir := t.TempDir()
	if err := writeSystemdUnits(e, dir, "zenith"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.service"))
	want := []string{"zenith-pageserver.service", "zenith-safekeeper-1.service", "zenith-safekeeper-2.service", "zenith-safekeeper-3.service"}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("units written: %v, want %v", got, want)
	}

	cmd := exec.Command(analyze, append([]string{"verify"}, files...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out.String())
	}

	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		for _, line := range []string{"Restart=on-failure", "User=zenith", "Group=zenith", "KillSignal=SIGTERM", "Environment=ZENITH_CACHE_DIR=/var/cache/zenith"} {
			if !strings.Contains(unit, "\n"+line+"\n") {
				t.Errorf("%s has no line %q:\n%s", filepath.Base(f), line, unit)
			}
		}
		if !strings.Contains(unit, `"`+repoDir) {
			t.Errorf("%s does not quote the repository path with a space:\n%s", filepath.Base(f), unit)
		}
	}
	ps, _ := os.ReadFile(filepath.Join(dir, "zenith-pageserver.service"))
	for _, sk := range want[1:] {
		for _, key := range []string{"After=", "Wants="} {
			if !strings.Contains(lineWith(string(ps), key), sk) {
				t.Errorf("page server unit's %s line does not name %s:\n%s", key, sk, ps)
			}
		}
	}
	sk, _ := os.ReadFile(filepath.Join(dir, "zenith-safekeeper-1.service"))
	if strings.Contains(string(sk), "zenith-pageserver.service") {
		t.Errorf("safekeeper unit depends on the page server:\n%s", sk)
	}
}

// lineWith returns the first line of text that starts with prefix.
func lineWith(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestSystemdUnitsWithAuth: with --auth --tls, the units pass the key and
// certificates as flags and the services' token through an environment
// file of mode 0600 (never on the command line), and that token verifies.
func TestSystemdUnitsWithAuth(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Safekeepers.Count = 3
	cfg.Security = SecurityConfig{Auth: true, TLS: true}
	e := &Env{Dir: t.TempDir(), Config: cfg, Out: io.Discard, Progress: io.Discard}
	if err := initSecurity(e); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeSystemdUnits(e, dir, "zenith"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(e.ServiceTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", e.ServiceTokenFile(), st.Mode().Perm())
	}
	b, err := os.ReadFile(e.ServiceTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutPrefix(strings.TrimSpace(string(b)), AuthTokenEnv+"=")
	if !ok {
		t.Fatalf("%s: %q, want %s=<token>", e.ServiceTokenFile(), b, AuthTokenEnv)
	}
	v, err := auth.LoadVerifier(e.PublicKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(tok); err != nil || c.Scope != auth.ScopeAdmin {
		t.Errorf("the services' token: %+v, %v; want an admin token that verifies", c, err)
	}
	sk, err := os.ReadFile(filepath.Join(dir, "zenith-safekeeper-1.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EnvironmentFile=" + e.ServiceTokenFile() + "\n", "--auth-public-key " + e.PublicKeyPath(), "--tls-cert ", "--tls-ca "} {
		if !strings.Contains(string(sk), want) {
			t.Errorf("safekeeper unit has no %q:\n%s", want, sk)
		}
	}
	if strings.Contains(string(sk), tok) {
		t.Errorf("the token is in the unit file itself:\n%s", sk)
	}
}
