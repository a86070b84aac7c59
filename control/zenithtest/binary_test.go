package zenithtest

import (
	"os/exec"
	"strings"
	"testing"
)

func TestBinaryRuns(t *testing.T) {
	t.Setenv("ZENITH_BIN", "")
	bin := Binary(t)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), "zenith") {
		t.Errorf("%s --help does not name zenith:\n%s", bin, out)
	}
	if again := Binary(t); again != bin {
		t.Errorf("second Binary() = %s, want the same build %s", again, bin)
	}
}

func TestBinaryFromEnvironment(t *testing.T) {
	t.Setenv("ZENITH_BIN", "/bin/true")
	if got := Binary(t); got != "/bin/true" {
		t.Errorf("Binary() = %s with ZENITH_BIN=/bin/true", got)
	}
}
