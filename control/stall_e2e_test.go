package control_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// mountFreezable moves dir's contents onto a new ext4 file system of
// sizeMiB on a loop device mounted at dir (as root), which the test can
// freeze: with fsfreeze -f every write to it waits until fsfreeze -u, as
// on a disk that does not answer. When the test ends, stop (which must
// end every process using it) runs, then the file system is thawed and
// unmounted, even if the test failed.
func mountFreezable(t *testing.T, dir string, sizeMiB int, stop func()) (freeze, thaw func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: mounting and freezing a file system needs root")
	}
	for _, tool := range []string{"mkfs.ext4", "fsfreeze", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: no %s here", tool)
		}
	}
	img := dir + ".img"
	if out, err := exec.Command("truncate", "-s", strconv.Itoa(sizeMiB)+"M", img).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v: %s", err, out)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	t.Cleanup(func() { os.Remove(img) }) // after the unmount
	thaw = func() { _ = exec.Command("fsfreeze", "-u", dir).Run() }
	mountOver(t, dir, func() { thaw(); stop() }, "-o", "loop", img)
	os.RemoveAll(filepath.Join(dir, "lost+found"))
	freeze = func() {
		t.Helper()
		if out, err := exec.Command("fsfreeze", "-f", dir).CombinedOutput(); err != nil {
			t.Fatalf("fsfreeze -f %s: %v: %s", dir, err, out)
		}
	}
	return freeze, thaw
}

// TestPageserverStalledDisk freezes the file system under one tenant's
// directory of a running page server (a disk that stops answering; its
// WAL store and layers are there) while each of two tenants has a
// compute. The frozen tenant's commit must wait (not acknowledged), the
// other tenant must go on committing and reading, zenith status must say
// which timeline stalled on what; after the thaw the waiting commit is
// acknowledged, the report clears, and both tenants have every row.
func TestPageserverStalledDisk(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{NoStart: true})
	tenants := filepath.Join(env.RepoDir, "pageserver", "tenants")
	entries, err := os.ReadDir(tenants)
	if err != nil || len(entries) != 1 {
		t.Fatalf("page server tenants after init: %v %v", entries, err)
	}
	tenantA := entries[0].Name()
	freeze, thaw := mountFreezable(t, filepath.Join(tenants, tenantA), 256, func() { _, _, _ = env.Run("stop", "--immediate") })
	env.Zenith("start")
	m := regexp.MustCompile(`created tenant ([0-9a-f]{32})`).FindStringSubmatch(env.Zenith("tenant", "create"))
	if m == nil {
		t.Fatal("zenith tenant create did not say which tenant")
	}
	tenantB := m[1]
	ctx := context.Background()
	a := env.Postgres.CreateStart("main", "--name", "a").Connect()
	b := env.Postgres.CreateStart("main", "--tenant", tenantB, "--name", "b").Connect()
	exec1(t, a, "CREATE TABLE t (i int)")
	exec1(t, b, "CREATE TABLE t (i int)")

	freeze()
	aDone := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		_, err := a.Exec(cctx, "INSERT INTO t VALUES (1)")
		aDone <- err
	}()
	const bRows = 20
	for i := range bRows {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := b.Exec(cctx, "INSERT INTO t VALUES ($1)", i)
		cancel()
		if err != nil {
			t.Fatalf("B's commit %d with A's disk frozen: %v", i, err)
		}
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != bRows {
		t.Fatalf("B reads %d rows (%v), want %d", n, err, bRows)
	}
	var status string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		status = env.Zenith("status")
		if strings.Contains(status, "STALLED since") || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("zenith status with A's disk frozen:\n%s", status)
	if !regexp.MustCompile(`STALLED since \S+: timeline [0-9a-f]{32} of tenant ` + tenantA + `: WAL store (write|fsync)`).MatchString(status) {
		t.Errorf("zenith status does not say that A's WAL store stalled:\n%s", status)
	}
	select {
	case err := <-aDone:
		t.Fatalf("A's commit returned (%v) with its disk frozen", err)
	default:
	}

	thaw()
	select {
	case err := <-aDone:
		if err != nil {
			t.Fatalf("A's commit after the thaw: %v", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("A's commit still waits after the thaw")
	}
	for deadline := time.Now().Add(time.Minute); strings.Contains(env.Zenith("status"), "STALLED"); time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("zenith status still says STALLED after the thaw:\n%s", env.Zenith("status"))
		}
	}
	if err := a.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Errorf("A reads %d rows (%v), want 1", n, err)
	}
}
