package pgcluster

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ServerVersion is what a PostgreSQL installation's `postgres --version`
// says.
type ServerVersion struct {
	// Text is the whole line, e.g. "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)".
	Text string
	// Major is the major version, e.g. 15.
	Major int
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// Version runs binDir/postgres --version.
func Version(ctx context.Context, binDir string) (ServerVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return ServerVersion{}, fmt.Errorf("postgres --version: %v", err)
	}
	text := strings.TrimSpace(string(out))
	m := versionRE.FindStringSubmatch(text)
	if m == nil {
		return ServerVersion{}, fmt.Errorf("postgres --version printed %q, not a PostgreSQL version", text)
	}
	major, err := strconv.Atoi(m[1])
	if err != nil {
		return ServerVersion{}, fmt.Errorf("postgres --version printed %q: %v", text, err)
	}
	return ServerVersion{Text: text, Major: major}, nil
}
