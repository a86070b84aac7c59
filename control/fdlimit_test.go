package control_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
)

// fewFDs is the file-descriptor limit TestPageserverFewFileDescriptors
// runs the page server under: the figure, far below the default
// max_open_layer_files.
const fewFDs = 32

// TestPageserverFewFileDescriptors writes a repository of many more
// layer files than fewFDs, then restarts the page server (the real
// binary) under RLIMIT_NOFILE fewFDs, soft and hard, which its WAL redo
// processes inherit. A compute re-created from it must dump as the one
// before did, writes must go on (the WAL receiver and WAL store need
// descriptors too), and the page server must say in its log that it
// lowered max_open_layer_files to fit the limit.
func TestPageserverFewFileDescriptors(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("SKIPPED: prlimit (util-linux) is not installed")
	}
	env := zenithtest.New(t, nil)
	// A layer file per MiB of WAL; compaction writes them again in
	// files of 256 KiB.
	env.Zenith("pageserver", "stop")
	setTenantConfig(t, env, map[string]string{"checkpoint_distance": "1048576", "compaction_target_size": "262144"})
	// Compaction every 2 s, not 20: the test waits for it twice.
	setPageserverConfig(t, env, map[string]string{"compaction_period": `"2s"`})
	env.Zenith("pageserver", "start")
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 4) AS v FROM generate_series(1, 200000) g")
	exec1(t, conn, "CREATE INDEX big_v ON big (v)")
	exec1(t, conn, "UPDATE big SET v = md5(v) WHERE id % 7 = 0")
	want := dumpAll(t, pg)
	conn.Close(context.Background())
	pg.Stop()
	// Compaction merges the flushed L0 layers, each
	// over every key, into layers over key ranges. Under the limit, a
	// page read through more L0 layers than it can keep open reopens
	// each of them for every page (see docs/resource-limits.md).
	waitFor(t, "compaction to merge the L0 layers", 3*time.Minute, func() bool {
		_, l0 := layerFiles(t, env)
		return l0 < 10
	})
	env.Zenith("pageserver", "stop")
	layers, l0 := layerFiles(t, env)
	if layers <= 2*fewFDs {
		t.Fatalf("%d layer files, want more than %d for the test to mean something", layers, 2*fewFDs)
	}

	start := exec.Command(prlimit, "--nofile="+strconv.Itoa(fewFDs)+":"+strconv.Itoa(fewFDs), "--", env.Bin, "pageserver", "start")
	start.Env = append(os.Environ(), "ZENITH_REPO_DIR="+env.RepoDir)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("zenith pageserver start under prlimit: %v\n%s\nlog:\n%s", err, out, logTail(t, env))
	}
	pid := pageserverPID(t, env)
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(limits), "Max open files            "+strconv.Itoa(fewFDs)+" ") {
		t.Fatalf("the page server does not run under %d descriptors:\n%s", fewFDs, limits)
	}
	t.Logf("%d layer files (%d L0), page server pid %d under RLIMIT_NOFILE %d", layers, l0, pid, fewFDs)

	// Eager computes: their basebackup reads every page through the
	// layers on one connection, where a lazy compute's FUSE server keeps
	// several, each a descriptor of the page server's few.
	pg.Destroy()
	pg = env.Postgres.CreateStart("main", "--eager")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("under %d descriptors: pg_dumpall of main: %v", fewFDs, err)
	}
	conn = pg.Connect()
	exec1(t, conn, "UPDATE big SET v = md5(v) WHERE id % 100 = 0")
	want = dumpAll(t, pg)
	conn.Close(context.Background())
	pg.Destroy()
	// Compaction goes on under the limit: it merges the new L0 layers
	// once they reach half of max_open_layer_files, a few at a time.
	waitFor(t, "compaction under the limit to merge the new L0 layers", 3*time.Minute, func() bool {
		_, l0 := layerFiles(t, env)
		return l0 < 3
	})
	pg = env.Postgres.CreateStart("main", "--eager")
	if err := pgdump.Compare(dumpAll(t, pg), want).Err(); err != nil {
		t.Errorf("under %d descriptors, after writes: pg_dumpall of main: %v", fewFDs, err)
	}
	pg.Destroy()
	if pid2 := pageserverPID(t, env); pid2 != pid {
		t.Errorf("page server pid %d, was %d: it restarted", pid2, pid)
	}

	log, err := os.ReadFile(filepath.Join(env.RepoDir, "pageserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "max_open_layer_files lowered") {
		t.Errorf("the page server's log does not say it lowered max_open_layer_files to fit %d descriptors", fewFDs)
	}
	for _, bad := range []string{"too many open files", "panic"} {
		if strings.Contains(string(log), bad) {
			t.Errorf("the page server's log says %q", bad)
		}
	}
}

// layerFiles counts the layer files of every timeline of the page
// server, and among them the L0 ones (deltas over every key).
func layerFiles(t *testing.T, env *zenithtest.Env) (all, l0 int) {
	t.Helper()
	err := filepath.Walk(filepath.Join(env.RepoDir, "pageserver"), func(p string, fi os.FileInfo, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by compaction as we walk
		}
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		keys, lsns, ok := strings.Cut(filepath.Base(p), "__")
		if ok && !strings.HasSuffix(p, ".tmp") {
			all++
			if strings.HasSuffix(keys, "-ffffffffffffffffffffffffffffffffffff") && strings.HasPrefix(keys, "000000000000000000000000000000000000-") && strings.Contains(lsns, "-") {
				l0++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all, l0
}

// setTenantConfig sets settings of the default tenant's config file,
// which the page server reads when it starts.
func setTenantConfig(t *testing.T, env *zenithtest.Env, set map[string]string) {
	t.Helper()
	setConfig(t, filepath.Join(env.RepoDir, "pageserver", "tenants", defaultTenant(t, env), "config.toml"), set)
}

// setConfig sets keys already in the TOML file conf to new values.
func setConfig(t *testing.T, conf string, set map[string]string) {
	t.Helper()
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		re := regexp.MustCompile(`(?m)^` + k + ` = .*$`)
		if !re.Match(b) {
			t.Fatalf("%s has no %s", conf, k)
		}
		b = re.ReplaceAll(b, []byte(k+" = "+v))
	}
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// logTail is the end of the page server's log.
func logTail(t *testing.T, env *zenithtest.Env) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(env.RepoDir, "pageserver.log"))
	return string(b[max(0, len(b)-4000):])
}
