package control

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/vfs"
)

// systemdUnit is a unit file for one zenith role run in the foreground.
const systemdUnit = `# Written by zenith init --systemd for the repository %s.
[Unit]
Description=Zenith %s
After=network.target

[Service]
Type=simple
ExecStart=%s
Restart=on-failure
KillSignal=SIGTERM
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
`

// writeSystemdUnits writes a unit file per role of the repository to dir:
// zenith-pageserver.service and zenith-safekeeper-N.service. They run the
// same foreground commands zenith start runs in the background, so use
// one or the other.
func writeSystemdUnits(e *Env, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("systemd units: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("systemd units: find the zenith binary: %w", err)
	}
	daemons := []*Daemon{e.pageserverDaemon()}
	files := []string{"zenith-pageserver.service"}
	sks, err := e.safekeeperDaemons(0)
	if err != nil {
		return err
	}
	for i, d := range sks {
		daemons = append(daemons, d)
		files = append(files, fmt.Sprintf("zenith-safekeeper-%d.service", i+1))
	}
	for i, d := range daemons {
		var args []string
		for _, a := range append(append([]string{exe}, d.Args...), d.Extra...) {
			if strings.ContainsAny(a, " \t\"\\") {
				a = strconv.Quote(a) // systemd unquotes C-style double quotes
			}
			args = append(args, a)
		}
		unit := fmt.Sprintf(systemdUnit, e.Dir, d.Name, strings.Join(args, " "))
		path := filepath.Join(dir, files[i])
		if _, err := vfs.WriteFileAtomic(vfs.Default, path, []byte(unit), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(e.Progress, "wrote %s\n", path)
	}
	return nil
}
