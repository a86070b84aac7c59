package zenithtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// binDirPrefix names the directories Binary builds into, one per test
// process: binDirPrefix + pid.
const binDirPrefix = "zenithtest-bin-"

var built = sync.OnceValues(build)

// Binary returns the path of the zenith binary the test should run:
// $ZENITH_BIN if set (scripts/test sets it to the bin/zenith it just
// built), otherwise one built with `go build` from this checkout, once per
// test process.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the zenith binary; skipped in -short mode")
	}
	if p := os.Getenv("ZENITH_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("ZENITH_BIN=%s: %v", p, err)
		}
		return p
	}
	p, err := built()
	if err != nil {
		t.Fatalf("build zenith: %v", err)
	}
	return p
}

// build runs scripts/build into a directory of this process, after
// removing the ones of test processes that are gone.
func build() (string, error) {
	// go test puts its own GOROOT/bin first on the PATH of the test binary,
	// so the go command that runs the test is the one found here.
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find the go command: %w (or set ZENITH_BIN)", err)
	}
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the zenith module: run the tests from the checkout, or set ZENITH_BIN")
	}
	removeStaleBinDirs()
	dir := filepath.Join(os.TempDir(), binDirPrefix+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// scripts/build, not go build alone: it compiles the WAL redo module
	// and embeds it, as the page server needs.
	bin := filepath.Join(dir, "zenith")
	root := filepath.Dir(gomod)
	cmd := exec.Command(filepath.Join(root, "scripts", "build"), "-o", bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(goTool)+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/build in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// removeStaleBinDirs removes the build directories of test processes that
// have exited.
func removeStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), binDirPrefix))
		if err != nil || pid < 1 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}
