package pgcluster

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ServerUserName is the OS user PostgreSQL runs as when zenith runs as
// root: the user Debian's postgresql-common package creates.
const ServerUserName = "postgres"

// OSUser is the unprivileged operating-system user that PostgreSQL's
// programs run as when the calling process is root.
type OSUser struct {
	Name string
	UID  uint32
	GID  uint32
	Home string
}

// ServerUser returns the user PostgreSQL programs must run as: nil (the
// calling user) unless the calling process is root, in which case the
// "postgres" OS user, since PostgreSQL refuses to run as root.
func ServerUser() (*OSUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(ServerUserName)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as the %q OS user, but it does not exist (%v): install postgresql-15, which creates it, or run zenith as an unprivileged user",
			ServerUserName, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	return &OSUser{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}, nil
}

// RunAs makes cmd run as u (a nil u leaves cmd as the calling user). The
// supplementary groups are dropped so none of root's leak into PostgreSQL.
// It also cleans cmd's environment: the caller's PG* variables (PGDATA,
// PGPORT, PGHOST...) would override what the Cluster passes on the command
// line, HOME is the user's own, and LC_ALL=C keeps the server's messages
// in English, which Start reads back from its log.
func RunAs(cmd *exec.Cmd, u *OSUser) {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if u == nil {
		if home, err := os.UserHomeDir(); err == nil {
			env = append(env, "HOME="+home)
		}
		cmd.Env = env
		return
	}
	cmd.Env = append(env, "HOME="+u.Home)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}
}

// PrepareDir creates dir (mode 0700, as PostgreSQL wants its data
// directory) if it does not exist, gives it and everything in it to u, and
// checks that u can reach it through its parents. A nil u (not running as
// root) only creates the directory.
func PrepareDir(dir string, u *OSUser) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if u == nil {
		return nil
	}
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(u.UID), int(u.GID))
	})
	if err != nil {
		return fmt.Errorf("give %s to OS user %s: %w", dir, u.Name, err)
	}
	return checkReachable(dir, u)
}

// CheckReachable reports, when zenith runs as root (u not nil), whether u
// may search every parent directory of path, so that PostgreSQL running as
// u can open it.
func CheckReachable(path string, u *OSUser) error {
	if u == nil {
		return nil
	}
	return checkReachable(path, u)
}

// checkReachable verifies that u may search every parent directory of
// dir, so that PostgreSQL running as u can open it. A typical failure is a
// data directory under a 0700 temporary directory owned by root.
func checkReachable(dir string, u *OSUser) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("check %s: %w", p, err)
		}
		if !canSearch(st, u) {
			return fmt.Errorf("OS user %s cannot reach %s: directory %s (mode %v) is not searchable by it; chmod o+x %s or choose another directory",
				u.Name, dir, p, st.Mode().Perm(), p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func canSearch(st os.FileInfo, u *OSUser) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := st.Mode().Perm()
	switch {
	case sys.Uid == u.UID:
		return perm&0o100 != 0
	case sys.Gid == u.GID:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}
