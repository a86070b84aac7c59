package control

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tarfile"
)

func TestTarDirUntarRoundTrip(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"PG_VERSION":          "15\n",
		"global/pg_control":   strings.Repeat("\x01", 8192),
		"base/5/16384":        "",
		"pg_wal/archive_stat": "x",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "pg_notify"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarDir(&buf, src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := tarfile.ExtractDataDir(&buf, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: got %d bytes (%v), want %d", name, len(got), err, len(want))
		}
		if st, err := os.Stat(filepath.Join(dst, name)); err == nil && st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (PostgreSQL's)", name, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(filepath.Join(dst, "pg_notify")); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("empty directory pg_notify not restored as 0700: %v %v", st, err)
	}
}

func TestParseSettings(t *testing.T) {
	got, err := parseSettings([]string{"shared_buffers=256MB", "zenith.x=a=b", "work_mem="})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"shared_buffers": "256MB", "zenith.x": "a=b", "work_mem": ""}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{"shared_buffers", "=1", "a b=1", "x=1\nfsync=off"} {
		if _, err := parseSettings([]string{bad}); err == nil {
			t.Errorf("parseSettings(%q) accepted it", bad)
		}
	}
}

func TestWriteComputeConfig(t *testing.T) {
	dir := t.TempDir()
	n := &Node{Name: "n1", Tenant: id.NewTenantID(), Timeline: id.NewTimelineID(), Branch: "main", Port: 55432,
		Settings: map[string]string{"work_mem": "8MB", "application_name": "it's"}, dir: dir}
	if err := os.Mkdir(n.DataDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.DataDir(), "postgresql.conf"), []byte("max_connections = 100"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		readOnlyLSN uint64
		replica     bool
		safekeepers int
		want, not   []string
	}{
		{name: "writable, no safekeepers", want: []string{"synchronous_standby_names = 'pageserver'", "synchronous_commit = 'on'", "wal_level = 'replica'"}, not: []string{"default_transaction_read_only"}},
		{name: "read-only", readOnlyLSN: 0x16B9188, want: []string{"default_transaction_read_only = 'on'"}, not: []string{"synchronous_standby_names"}},
		{name: "replica", replica: true, safekeepers: 3,
			want: []string{"hot_standby = 'on'", "primary_conninfo = 'host=127.0.0.1,127.0.0.1,127.0.0.1 port=5454,5455,5456 user=replica application_name=replica_n1 connect_timeout=5 options=''-c tenant_id=" +
				n.Tenant.String() + " -c timeline_id=" + n.Timeline.String() + "'' sslmode=disable'"},
			not: []string{"synchronous_standby_names", "default_transaction_read_only"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.ReadOnlyLSN, n.Replica = 0, tc.replica
			if tc.readOnlyLSN != 0 {
				n.ReadOnlyLSN = 0x16B9188
			}
			e := &Env{Config: DefaultConfig()}
			e.Config.Safekeepers.Count = tc.safekeepers
			// Twice: the include must not be appended again.
			for i := 0; i < 2; i++ {
				if err := writeComputeConfig(n, e, n.DataDir()); err != nil {
					t.Fatal(err)
				}
			}
			conf, _ := os.ReadFile(filepath.Join(n.DataDir(), computeConfFile))
			all := []string{"port = '55432'", "zenith.tenant_id = '" + n.Tenant.String() + "'",
				"zenith.timeline_id = '" + n.Timeline.String() + "'", "fsync = 'off'", "work_mem = '8MB'", "application_name = 'it''s'"}
			for _, w := range append(all, tc.want...) {
				if !strings.Contains(string(conf), w+"\n") {
					t.Errorf("zenith.conf lacks %q:\n%s", w, conf)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(string(conf), w) {
					t.Errorf("zenith.conf has %q:\n%s", w, conf)
				}
			}
			main, _ := os.ReadFile(filepath.Join(n.DataDir(), "postgresql.conf"))
			if c := strings.Count(string(main), "include '"+computeConfFile+"'"); c != 1 || !strings.HasPrefix(string(main), "max_connections = 100\n") {
				t.Errorf("postgresql.conf includes zenith.conf %d times, or lost its contents:\n%s", c, main)
			}
			if _, err := os.Stat(filepath.Join(n.DataDir(), "standby.signal")); (err == nil) != tc.replica {
				t.Errorf("standby.signal: %v, want it only for a replica", err)
			}
			os.Remove(filepath.Join(n.DataDir(), "standby.signal"))
			hba, _ := os.ReadFile(filepath.Join(n.DataDir(), "pg_hba.conf"))
			if !strings.Contains(string(hba), "host    replication  all   127.0.0.1/32  trust") {
				t.Errorf("pg_hba.conf does not let the page server replicate from loopback:\n%s", hba)
			}
		})
	}
}

func TestPrintBranchTree(t *testing.T) {
	tl := func() id.TimelineID { return id.NewTimelineID() }
	main, feat, sub, other := tl(), tl(), tl(), tl()
	branches := []api.BranchInfo{
		{Name: "sub", Timeline: sub, AncestorTimeline: feat.String(), AncestorLSN: 0x1800000, LastRecordLSN: 0x1900000, LogicalSize: -1},
		{Name: "other", Timeline: other, AncestorTimeline: main.String(), AncestorLSN: 0x1A00000, LastRecordLSN: 0x1A00000},
		{Name: "main", Timeline: main, LastRecordLSN: 0x2000000, LogicalSize: 7 << 20, LayerBytes: 20 << 20, WALBytes: 16 << 20},
		{Name: "feature", Timeline: feat, AncestorTimeline: main.String(), AncestorLSN: 0x16B9188, LastRecordLSN: 0x1800000},
	}
	var buf bytes.Buffer
	printBranchTree(&buf, branches)
	want := `main (last 0/2000000, logical 7.0 MiB, physical 36.0 MiB)
├── feature @ 0/16B9188 (last 0/1800000, logical 0 B, physical 0 B)
│   └── sub @ 0/1800000 (last 0/1900000, logical ?, physical 0 B)
└── other @ 0/1A00000 (last 0/1A00000, logical 0 B, physical 0 B)
`
	if buf.String() != want {
		t.Errorf("tree:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// TestMakeStandby: a replica's pg_control names the primary's real
// checkpoint, "shut down in recovery", consistent from it; zenith.conf
// gets the primary's values of the settings a hot standby needs, unless
// the user gave them; a basebackup after the checkpoint is refused.
func TestMakeStandby(t *testing.T) {
	write := func(t *testing.T, redo pgdata.LSN) string {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "global"), 0o700); err != nil {
			t.Fatal(err)
		}
		cf := &pgdata.ControlFile{ControlVersion: pgdata.ControlVersion, CatalogVersion: pgdata.CatalogVersion, State: pgdata.DBShutdowned, CheckPoint: redo,
			CheckPointCopy: pgdata.CheckPoint{Redo: redo, ThisTimeLineID: 1, PrevTimeLineID: 1},
			MaxConnections: 150, MaxWorkerProcesses: 8, MaxWALSenders: 10, MaxLocksPerXact: 128,
			BlockSize: pgdata.BlockSize, XLogBlockSize: pgdata.XLogBlockSize, XLogSegSize: pgdata.WALSegmentSize}
		if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), cf.Encode(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, computeConfFile), []byte("port = '5432'\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	const redo, ckpt = pgdata.LSN(0x155D408), pgdata.LSN(0x155D440)
	dir := write(t, redo)
	n := &Node{Name: "r", Settings: map[string]string{"max_worker_processes": "16"}}
	if err := makeStandby(dir, n, ckpt); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if cf.State != pgdata.DBShutdownedInRecovery || cf.CheckPoint != ckpt || cf.CheckPointCopy.Redo != redo ||
		cf.MinRecoveryPoint != ckpt || cf.MinRecoveryPointTLI != 1 {
		t.Errorf("pg_control: state %v, checkpoint %v, redo %v, minRecoveryPoint %v on %d; want shut down in recovery, %v, %v, %v on 1",
			cf.State, cf.CheckPoint, cf.CheckPointCopy.Redo, cf.MinRecoveryPoint, cf.MinRecoveryPointTLI, ckpt, redo, ckpt)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, computeConfFile))
	for _, w := range []string{"port = '5432'\n", "max_connections = 150\n", "max_wal_senders = 10\n", "max_locks_per_transaction = 128\n"} {
		if !strings.Contains(string(conf), w) {
			t.Errorf("zenith.conf lacks %q:\n%s", w, conf)
		}
	}
	for _, w := range []string{"max_worker_processes", "max_prepared_transactions"} {
		if strings.Contains(string(conf), w) {
			t.Errorf("zenith.conf has %s (given by the user, or 0 on the primary):\n%s", w, conf)
		}
	}

	// Without a real checkpoint (no primary runs), pg_control stays.
	dir = write(t, redo)
	if err := makeStandby(dir, n, 0); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if cf, err := pgdata.ParseControlFile(b); err != nil || cf.State != pgdata.DBShutdowned || cf.CheckPoint != redo {
		t.Errorf("pg_control without a checkpoint to point at: %+v %v, want it unchanged", cf, err)
	}

	if err := makeStandby(write(t, ckpt+0x100), n, ckpt); err == nil {
		t.Error("makeStandby of a basebackup after the checkpoint: no error")
	}
}
