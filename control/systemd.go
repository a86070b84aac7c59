package control

import (
	"fmt"
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/vfs"
)

// DefaultSystemdUser is the OS user the systemd units run zenith as.
const DefaultSystemdUser = "zenith"

// systemdCacheDir is the unit's CacheDirectory: systemd creates
// /var/cache/zenith owned by the unit's user, and the page server writes
// the WAL redo module there (walredo.ModuleCacheDir).
const systemdCacheDir = "zenith"

// systemdUnit is one unit file zenith init --systemd writes.
type systemdUnit struct {
	File string
	// After are the units this one starts after and stops before.
	After []string
	// EnvFile, if set, holds the daemon's token (ServiceTokenFile).
	EnvFile string
	d       *Daemon
}

// systemdUnits returns the units of the repository's roles: each
// safekeeper, those of other hosts too (to be copied there: each runs
// with its own addresses), then the page server when it runs here. The
// page server starts after the local safekeepers and stops before them: it streams WAL from them, and
// its last flush on SIGTERM needs nothing from them, while a safekeeper
// that stopped first would leave the page server retrying. Compute nodes
// (zenith pg start) need both and are not units: stop them first
// (zenith pg stop) when stopping the services by hand.
func (e *Env) systemdUnits() ([]systemdUnit, error) {
	var units []systemdUnit
	var skFiles []string
	for i, sk := range e.Config.SafekeeperList() {
		f := fmt.Sprintf("zenith-safekeeper-%d.service", i+1)
		units = append(units, systemdUnit{File: f, d: e.safekeeperDaemon(i + 1)})
		// Only a safekeeper on this host can order the page server.
		if sk.Local {
			skFiles = append(skFiles, f)
		}
	}
	if e.Config.Pageserver.Local {
		units = append(units, systemdUnit{File: "zenith-pageserver.service", After: skFiles, d: e.pageserverDaemon()})
	}
	if e.Config.Security.Auth {
		for i := range units {
			units[i].EnvFile = e.ServiceTokenFile()
		}
	}
	return units, nil
}

// render returns the unit file that runs the role in the foreground as
// user, with the zenith binary exe.
func (u systemdUnit) render(repoDir, exe, user string) string {
	var args []string
	for _, a := range append(append([]string{exe}, u.d.Args...), u.d.Extra...) {
		if strings.ContainsAny(a, " \t\"\\'$%;") {
			a = strconv.Quote(a) // systemd unquotes C-style double quotes
		}
		args = append(args, strings.ReplaceAll(a, "%", "%%"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by zenith init --systemd for the repository %s.\n", repoDir)
	b.WriteString("# Install: copy to /etc/systemd/system, systemctl daemon-reload, systemctl enable --now.\n")
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=Zenith %s\n", u.d.Name)
	fmt.Fprintf(&b, "After=%s\n", strings.Join(append([]string{"network-online.target"}, u.After...), " "))
	fmt.Fprintf(&b, "Wants=%s\n", strings.Join(append([]string{"network-online.target"}, u.After...), " "))
	b.WriteString("\n[Service]\n")
	b.WriteString("Type=simple\n")
	fmt.Fprintf(&b, "User=%s\n", user)
	fmt.Fprintf(&b, "Group=%s\n", user)
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(args, " "))
	b.WriteString("Restart=on-failure\n")
	b.WriteString("RestartSec=2s\n")
	// SIGTERM: the role closes its listeners and flushes what it holds in
	// memory; 60 s covers a large in-memory layer.
	b.WriteString("KillSignal=SIGTERM\n")
	b.WriteString("TimeoutStopSec=60\n")
	fmt.Fprintf(&b, "CacheDirectory=%s\n", systemdCacheDir)
	fmt.Fprintf(&b, "Environment=ZENITH_CACHE_DIR=/var/cache/%s\n", systemdCacheDir)
	if u.EnvFile != "" {
		// The token the role presents to the other services; systemd
		// reads the file as root, so it stays 0600.
		fmt.Fprintf(&b, "EnvironmentFile=%s\n", u.EnvFile)
	}
	b.WriteString("LimitNOFILE=65536\n")
	b.WriteString("NoNewPrivileges=yes\n")
	b.WriteString("\n[Install]\n")
	b.WriteString("WantedBy=multi-user.target\n")
	return b.String()
}

// writeSystemdUnits writes a unit file per role of the repository to dir:
// zenith-safekeeper-N.service and zenith-pageserver.service, run as
// user. They run the same foreground commands zenith start runs in the
// background, so use one or the other.
func writeSystemdUnits(e *Env, dir, user string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("systemd units: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("systemd units: find the zenith binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("systemd units: find the zenith binary: %w", err)
	}
	units, err := e.systemdUnits()
	if err != nil {
		return err
	}
	if e.Config.Security.Auth {
		env, err := e.daemonEnv()
		if err != nil {
			return fmt.Errorf("systemd units: %w", err)
		}
		if _, err := vfs.WriteFileAtomic(vfs.Default, e.ServiceTokenFile(), []byte(strings.Join(env, "\n")+"\n"), 0o600); err != nil {
			return fmt.Errorf("systemd units: %w", err)
		}
		fmt.Fprintf(e.Progress, "wrote %s (the services' token, mode 0600)\n", e.ServiceTokenFile())
	}
	for _, u := range units {
		path := filepath.Join(dir, u.File)
		if _, err := vfs.WriteFileAtomic(vfs.Default, path, []byte(u.render(e.Dir, exe, user)), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(e.Progress, "wrote %s\n", path)
	}
	if _, err := osuser.Lookup(user); err != nil {
		fmt.Fprintf(e.Progress, "OS user %s does not exist here: create it before starting the units (useradd --system --home-dir /var/lib/zenith %s)\n", user, user)
	}
	return nil
}
