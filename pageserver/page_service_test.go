package pageserver

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
)

// testPageServer is a Server on loopback ports in a temporary directory,
// stopped and removed when the test ends.
type testPageServer struct {
	srv      *Server
	pgAddr   string
	httpAddr string
}

// walredoExtension builds the WAL redo module (a no-op when it is up to
// date) and returns its path.
var walredoExtension = sync.OnceValues(func() (string, error) {
	dir, err := filepath.Abs(filepath.Join("..", "walredo", "pgext"))
	if err != nil {
		return "", err
	}
	cmd := osexec.Command("make", "-s", "-C", dir, "PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make -C %s: %w\n%s", dir, err, out)
	}
	return filepath.Join(dir, "zenith_walredo.so"), nil
})

func startPageServer(t *testing.T) *testPageServer {
	t.Helper()
	return startPageServerWith(t, nil)
}

// startPageServerWith is startPageServer with a config that configure,
// if not nil, changes.
func startPageServerWith(t *testing.T, configure func(*Config)) *testPageServer {
	t.Helper()
	ext, err := walredoExtension()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): the WAL redo processes run as the postgres OS
	// user, which must reach their scratch directory inside.
	dir, err := os.MkdirTemp("", "zenith-pageserver-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.WaitLSNTimeout = tomlconf.Duration(time.Second)
	if configure != nil {
		configure(&cfg)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := newServer(ctx, dir, cfg, log, ext)
	if err != nil {
		cancel()
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	pgLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, pgLn, httpLn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		os.RemoveAll(dir)
	})
	return &testPageServer{srv: srv, pgAddr: pgLn.Addr().String(), httpAddr: httpLn.Addr().String()}
}

func (ts *testPageServer) connString() string {
	host, port, _ := net.SplitHostPort(ts.pgAddr)
	return fmt.Sprintf("host=%s port=%s user=zenith dbname=pageserver sslmode=disable", host, port)
}

// connect opens a pgx connection that speaks the simple query protocol.
func (ts *testPageServer) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(ts.connString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// rows runs a command and returns its rows as column -> value maps.
func rows(t *testing.T, conn *pgx.Conn, cmd string) []map[string]string {
	t.Helper()
	got, err := queryRows(conn, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return got
}

func queryRows(conn *pgx.Conn, cmd string) ([]map[string]string, error) {
	results, err := conn.PgConn().Exec(context.Background(), cmd).ReadAll()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, r := range results {
		for _, vals := range r.Rows {
			row := map[string]string{}
			for i, fd := range r.FieldDescriptions {
				row[fd.Name] = string(vals[i])
			}
			out = append(out, row)
		}
	}
	return out, nil
}

// wantSQLState checks that err is an ErrorResponse with the SQLSTATE.
func wantSQLState(t *testing.T, what string, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Errorf("%s: got %v, want SQLSTATE %s", what, err, code)
	}
}

// tarDir writes a tar of dir, as `tar -C dir -c .` would, with the
// contents of the files named in replace (slash-separated relative paths)
// replaced.
func tarDir(dir string, w io.Writer, replace map[string][]byte) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		contents, replaced := replace[h.Name]
		if replaced {
			h.Size = int64(len(contents))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		switch {
		case replaced:
			_, err = tw.Write(contents)
			return err
		case !d.Type().IsRegular():
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// importDataDir sends the tar of a stopped data directory to `import`.
func importDataDir(conn *pgx.Conn, tenant id.TenantID, name, dir string, replace map[string][]byte) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(dir, pw, replace)) }()
	defer pr.Close()
	_, err := conn.PgConn().CopyFrom(context.Background(), pr, fmt.Sprintf("import %s %s", tenant, name))
	return err
}

// initdbDir returns the data directory of a fresh initdb, never started.
func initdbDir(t *testing.T) string {
	t.Helper()
	return pgtest.New(t, nil).DataDir()
}

func TestPageService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ts := startPageServer(t)
	conn := ts.connect(t)

	ident := rows(t, conn, "identify_system")
	if len(ident) != 1 || ident[0]["server"] != "zenith-pageserver" || ident[0]["pg_version"] != "15" || ident[0]["version"] != Version {
		t.Errorf("identify_system = %v", ident)
	}

	// Tenants.
	created := rows(t, conn, "tenant_create")
	if len(created) != 1 {
		t.Fatalf("tenant_create: %v", created)
	}
	tenant, err := id.ParseTenantID(created[0]["tenant_id"])
	if err != nil {
		t.Fatal(err)
	}
	other := id.NewTenantID()
	if got := rows(t, conn, "tenant_create "+other.String()); got[0]["tenant_id"] != other.String() {
		t.Errorf("tenant_create %s answered %v", other, got)
	}
	_, err = queryRows(conn, "tenant_create "+other.String())
	wantSQLState(t, "tenant_create of an existing id", err, "42710")
	var listed []string
	for _, r := range rows(t, conn, "tenant_list") {
		listed = append(listed, r["tenant_id"])
	}
	if strings.Join(listed, ",") != strings.Join(sortedIDs(tenant, other), ",") {
		t.Errorf("tenant_list = %v, want %v", listed, sortedIDs(tenant, other))
	}

	// Import an initdb'd data directory as main.
	datadir := initdbDir(t)
	cf := readControl(t, datadir)
	if err := importDataDir(conn, tenant, "main", datadir, nil); err != nil {
		t.Fatalf("import: %v", err)
	}
	wantSQLState(t, "import of a taken name", importDataDir(conn, tenant, "main", datadir, nil), "42710")
	// A data directory that was not shut down cleanly is refused, and
	// leaves nothing behind: no branch, no timeline, no unpacked files.
	running := *cf
	running.State = pgdata.DBInProduction
	err = importDataDir(conn, tenant, "crashed", datadir, map[string][]byte{"global/pg_control": running.Encode()})
	wantSQLState(t, "import of a data directory in production", err, "22023")
	if got := rows(t, conn, "branch_list "+tenant.String()); len(got) != 1 {
		t.Errorf("branches after a refused import: %v", got)
	}
	if st := rows(t, conn, "status"); st[0]["timelines"] != "1" {
		t.Errorf("status after a refused import: %v, want 1 timeline", st)
	}
	if left, _ := os.ReadDir(filepath.Join(ts.srv.dir, importDirName)); len(left) != 0 {
		t.Errorf("a refused import left %d entries in %s", len(left), importDirName)
	}
	main := branchNamed(t, rows(t, conn, "branch_list "+tenant.String()), "main")
	mainLSN, err := pgdata.ParseLSN(main["last_record_lsn"])
	if err != nil || mainLSN <= cf.CheckPoint {
		t.Fatalf("main's last_record_lsn %q (%v), want after the checkpoint at %v", main["last_record_lsn"], err, cf.CheckPoint)
	}
	if main["prev_record_lsn"] != cf.CheckPoint.String() || main["ancestor_name"] != "" || main["ancestor_lsn"] != "" {
		t.Errorf("main = %v, want prev_record_lsn %v and no ancestor", main, cf.CheckPoint)
	}

	// Branches.
	dev := rows(t, conn, fmt.Sprintf("branch_create %s dev main", tenant))
	if len(dev) != 1 || dev[0]["name"] != "dev" || dev[0]["ancestor_name"] != "main" ||
		dev[0]["ancestor_timeline_id"] != main["timeline_id"] || dev[0]["ancestor_lsn"] != mainLSN.String() {
		t.Errorf("branch_create dev main = %v", dev)
	}
	rows(t, conn, fmt.Sprintf("branch_create %s atlsn %s@%v", tenant, main["timeline_id"], mainLSN))
	_, err = queryRows(conn, fmt.Sprintf("branch_create %s dev main", tenant))
	wantSQLState(t, "branch_create of a taken name", err, "42710")
	_, err = queryRows(conn, fmt.Sprintf("branch_create %s x nosuch", tenant))
	wantSQLState(t, "branch_create from an unknown branch", err, "42704")
	_, err = queryRows(conn, fmt.Sprintf("branch_create %s x main@%v", tenant, mainLSN-8))
	wantSQLState(t, "branch_create inside a record", err, "55000")
	_, err = queryRows(conn, fmt.Sprintf("branch_create %s x main@%v", tenant, mainLSN+0x10000))
	wantSQLState(t, "branch_create at a future LSN", err, "57014")
	_, err = queryRows(conn, fmt.Sprintf("branch_create %s x main@%s", other, mainLSN))
	wantSQLState(t, "branch_create in another tenant", err, "42704")
	var names []string
	for _, r := range rows(t, conn, "branch_list "+tenant.String()) {
		names = append(names, r["name"])
	}
	if strings.Join(names, ",") != "atlsn,dev,main" {
		t.Errorf("branch_list names = %v, want atlsn, dev, main", names)
	}
	if got := rows(t, conn, "branch_list "+other.String()); len(got) != 0 {
		t.Errorf("branch_list of a tenant without branches = %v", got)
	}
	// One branch, by name or timeline id: the same row without the
	// sizes, which it does not compute.
	for _, ref := range []string{"dev", dev[0]["timeline_id"]} {
		one := rows(t, conn, fmt.Sprintf("branch_list %s %s", tenant, ref))
		if len(one) != 1 || one[0]["name"] != "dev" || one[0]["timeline_id"] != dev[0]["timeline_id"] ||
			one[0]["last_record_lsn"] != dev[0]["last_record_lsn"] || one[0]["ancestor_name"] != "main" {
			t.Errorf("branch_list %s = %v, want dev's row %v", ref, one, dev)
		}
		if _, ok := one[0]["logical_size"]; ok {
			t.Errorf("branch_list %s has a logical_size: %v", ref, one[0])
		}
	}
	_, err = queryRows(conn, fmt.Sprintf("branch_list %s nosuch", tenant))
	wantSQLState(t, "branch_list of an unknown branch", err, "42704")
	_, err = queryRows(conn, fmt.Sprintf("branch_list %s dev", other))
	wantSQLState(t, "branch_list of another tenant's branch", err, "42704")

	st := rows(t, conn, "status")
	if len(st) != 1 || st[0]["tenants"] != "2" || st[0]["timelines"] != "3" {
		t.Errorf("status = %v, want 2 tenants, 3 timelines", st)
	}
	defaults := repo.DefaultConfig("")
	if got, want := st[0]["in_memory_layer_limit"], strconv.FormatInt(defaults.InMemoryLayerLimit, 10); got != want {
		t.Errorf("status in_memory_layer_limit = %q, want %q", got, want)
	}
	if got, want := st[0]["page_cache_limit"], strconv.FormatInt(defaults.PageCacheSize, 10); got != want {
		t.Errorf("status page_cache_limit = %q, want %q", got, want)
	}
	if got, want := st[0]["max_open_layer_files"], strconv.Itoa(defaults.MaxOpenLayerFiles); got != want {
		t.Errorf("status max_open_layer_files = %q, want %q", got, want)
	}
	for _, col := range []string{"rss_bytes", "go_heap_bytes"} {
		if n, err := strconv.ParseInt(st[0][col], 10, 64); err != nil || n <= 0 {
			t.Errorf("status %s = %q, want a positive number", col, st[0][col])
		}
	}

	t.Run("basebackup", func(t *testing.T) {
		var tarball bytes.Buffer
		if _, err := conn.PgConn().CopyTo(ctx, &tarball, fmt.Sprintf("basebackup %s dev", tenant)); err != nil {
			t.Fatalf("basebackup: %v", err)
		}
		pg := newClusterFromTar(t, tarball.Bytes(), nil)
		if err := pg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		assertCleanStart(t, pg)
		c := connect(t, pg, "postgres")
		defer c.Close(ctx)
		if n := queryInt(t, c, "SELECT count(*) FROM pg_class"); n < 300 {
			t.Errorf("pg_class has %d rows", n)
		}
		_, err := conn.PgConn().CopyTo(ctx, io.Discard, fmt.Sprintf("basebackup %s dev %v", tenant, mainLSN+0x10000))
		wantSQLState(t, "basebackup at a future LSN", err, "57014")
		_, err = conn.PgConn().CopyTo(ctx, io.Discard, fmt.Sprintf("basebackup %s dev %v", tenant, mainLSN-8))
		wantSQLState(t, "basebackup inside a record", err, "55000")
	})

	t.Run("psql", func(t *testing.T) {
		bin, err := pgcluster.FindBinDir(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(ts.pgAddr)
		out, err := osexec.CommandContext(ctx, filepath.Join(bin, "psql"), "-h", host, "-p", port, "-U", "zenith",
			"-X", "-A", "-t", "-c", "branch_list "+tenant.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if want := "main|" + main["timeline_id"] + "|||"; !strings.Contains(string(out), want) {
			t.Errorf("psql branch_list printed\n%s\nwant a line starting %q", out, want)
		}
	})

	t.Run("pagestream", func(t *testing.T) {
		ps := openPagestream(t, ts.pgAddr, fmt.Sprintf("pagestream %s dev", tenant))
		checkPagestream(t, ps, datadir, mainLSN)
		ps.close(t)
	})

	t.Run("http", func(t *testing.T) {
		base := "http://" + ts.httpAddr
		var status Status
		httpJSON(t, "GET", base+"/v1/status", "", http.StatusOK, &status)
		if status.Tenants != 2 || status.Timelines != 3 {
			t.Errorf("GET /v1/status = %+v", status)
		}
		if m := status.Memory; m.GoHeapBytes <= 0 || m.GoHeapLiveBytes <= 0 || m.GoHeapGoalBytes < m.GoHeapLiveBytes || m.InMemoryLayerLimit != defaults.InMemoryLayerLimit ||
			m.BlockCacheLimit != defaults.BlockCacheSize || m.InMemoryLayerBytes() > m.InMemoryLayerLimit {
			t.Errorf("GET /v1/status memory = %+v, want a Go heap and the default limits", m)
		}
		// A heap profile, as go tool pprof fetches it: gzipped protobuf.
		if prof := httpGet(t, base+"/debug/pprof/heap"); !strings.HasPrefix(prof, "\x1f\x8b") {
			t.Errorf("GET /debug/pprof/heap: %q..., want a gzipped profile", prof[:min(len(prof), 40)])
		}
		var branches []api.BranchInfo
		httpJSON(t, "GET", base+"/v1/tenant/"+tenant.String()+"/branch", "", http.StatusOK, &branches)
		if len(branches) != 3 || branches[2].Name != "main" || branches[2].LastRecordLSN != mainLSN {
			t.Errorf("GET branches = %+v", branches)
		}
		var created api.BranchInfo
		httpJSON(t, "POST", base+"/v1/tenant/"+tenant.String()+"/branch", `{"name":"viahttp","start":"dev"}`, http.StatusCreated, &created)
		if created.Name != "viahttp" || created.AncestorName != "dev" {
			t.Errorf("POST branch = %+v", created)
		}
		var e map[string]string
		httpJSON(t, "POST", base+"/v1/tenant/"+tenant.String()+"/branch", `{"name":"viahttp","start":"dev"}`, http.StatusConflict, &e)
		if e["code"] != "42710" {
			t.Errorf("POST of a taken branch name: %v", e)
		}
		httpJSON(t, "GET", base+"/v1/tenant/"+id.NewTenantID().String()+"/timeline", "", http.StatusNotFound, &e)
		httpJSON(t, "GET", base+"/v1/tenant/nothex/timeline", "", http.StatusBadRequest, &e)
		var timelines []httpapi.TimelineInfo
		httpJSON(t, "GET", base+"/v1/tenant/"+tenant.String()+"/timeline", "", http.StatusOK, &timelines)
		if len(timelines) != 4 {
			t.Errorf("GET timelines = %+v", timelines)
		}
		var tenants []map[string]string
		httpJSON(t, "POST", base+"/v1/tenant", `{}`, http.StatusCreated, &e)
		httpJSON(t, "GET", base+"/v1/tenant", "", http.StatusOK, &tenants)
		if len(tenants) != 3 {
			t.Errorf("GET /v1/tenant = %v", tenants)
		}

		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range []struct {
			name string
			want float64
		}{
			// checkPagestream's getpage requests, and the 32 blocks
			// of its getpages request, each counted as a getpage.
			{`zenith_pageserver_page_requests_total{request="getpage",result="ok"}`, 4 + 30},
			{`zenith_pageserver_page_requests_total{request="getpage",result="error"}`, 3 + 2},
			{`zenith_pageserver_getpage_seconds_count`, 7 + 32},
			{fmt.Sprintf(`zenith_pageserver_last_record_lsn{tenant_id="%s",timeline_id="%s"}`, tenant, main["timeline_id"]), float64(mainLSN)},
			{fmt.Sprintf(`zenith_pageserver_layer_files{kind="delta",tenant_id="%s",timeline_id="%s"}`, tenant, main["timeline_id"]), 1},
			{`zenith_pageserver_basebackups_total{result="ok"}`, 1},
			{`zenith_pageserver_memory_limit_bytes{kind="in_memory_layers"}`, float64(defaults.InMemoryLayerLimit)},
			{`zenith_pageserver_open_layer_files_limit`, float64(defaults.MaxOpenLayerFiles)},
		} {
			if got, ok := metricValue(string(body), m.name); !ok || got != m.want {
				t.Errorf("/metrics: %s = %v (found %v), want %v", m.name, got, ok, m.want)
			}
		}
		if got, ok := metricValue(string(body), `zenith_pageserver_memory_bytes{kind="go_heap"}`); !ok || got <= 0 {
			t.Errorf("/metrics: Go heap = %v (found %v), want a positive number", got, ok)
		}
		if got, ok := metricValue(string(body), `zenith_pageserver_memory_bytes{kind="go_heap_live"}`); !ok || got <= 0 {
			t.Errorf("/metrics: live Go heap = %v (found %v), want a positive number", got, ok)
		}
	})
}

// metricValue finds a sample in Prometheus' text format.
func metricValue(text, name string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func sortedIDs(ids ...id.TenantID) []string {
	var s []string
	for _, i := range ids {
		s = append(s, i.String())
	}
	if s[0] > s[1] {
		s[0], s[1] = s[1], s[0]
	}
	return s
}

func branchNamed(t *testing.T, rows []map[string]string, name string) map[string]string {
	t.Helper()
	for _, r := range rows {
		if r["name"] == name {
			return r
		}
	}
	t.Fatalf("no branch %q in %v", name, rows)
	return nil
}

// httpJSON makes a request and decodes the JSON answer into out.
func httpJSON(t *testing.T, method, url, body string, wantStatus int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Errorf("%s %s: status %d, want %d; body %s", method, url, resp.StatusCode, wantStatus, b)
		return
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Errorf("%s %s: %v in %s", method, url, err, b)
	}
}

// pagestreamClient speaks the page stream over a raw protocol connection.
type pagestreamClient struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

// dialPageService opens a session: startup, then ReadyForQuery.
func dialPageService(t *testing.T, addr string) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "zenith"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("startup: %v", err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return conn, fe
		}
	}
}

func openPagestream(t *testing.T, addr, cmd string) *pagestreamClient {
	t.Helper()
	conn, fe := dialPageService(t, addr)
	fe.Send(&pgproto3.Query{String: cmd})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.(*pgproto3.CopyBothResponse); !ok {
		t.Fatalf("%s: got %#v, want CopyBothResponse", cmd, msg)
	}
	return &pagestreamClient{conn: conn, fe: fe}
}

func (c *pagestreamClient) request(t *testing.T, req api.PageRequest) api.PageResponse {
	t.Helper()
	return c.requestN(t, req, 1)[0]
}

// requestN sends one request and reads n answers (a getpages request's).
func (c *pagestreamClient) requestN(t *testing.T, req api.PageRequest, n int) []api.PageResponse {
	t.Helper()
	c.fe.Send(&pgproto3.CopyData{Data: req.Encode()})
	if err := c.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var rs []api.PageResponse
	for range n {
		msg, err := c.fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			t.Fatalf("request %+v: got %#v, want CopyData", req, msg)
		}
		resp, err := api.ParsePageResponse(cd.Data)
		if err != nil {
			t.Fatal(err)
		}
		// Receive reuses its buffer.
		resp.Page = bytes.Clone(resp.Page)
		rs = append(rs, resp)
	}
	return rs
}

// close ends the stream and expects the server's CopyDone, the command's
// completion and ReadyForQuery.
func (c *pagestreamClient) close(t *testing.T) {
	t.Helper()
	c.fe.Send(&pgproto3.CopyDone{})
	if err := c.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%T", msg))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if want := "*pgproto3.CopyDone *pgproto3.CommandComplete *pgproto3.ReadyForQuery"; strings.Join(got, " ") != want {
		t.Errorf("end of the page stream: %v, want %s", got, want)
	}
}

// checkPagestream compares the page stream's answers as of lsn with the
// data directory that was imported.
func checkPagestream(t *testing.T, ps *pagestreamClient, datadir string, lsn pgdata.LSN) {
	t.Helper()
	// The largest main fork of the postgres database, and the database's size.
	var largest string
	var largestSize, dbSize int64
	const db = "base/5"
	entries, err := os.ReadDir(filepath.Join(datadir, db))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, _, _, err := pgdata.ParseRelationPath(db + "/" + e.Name()); err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		dbSize += info.Size()
		if _, err := strconv.Atoi(e.Name()); err == nil && info.Size() > largestSize {
			largest, largestSize = db+"/"+e.Name(), info.Size()
		}
	}
	rel, fork, _, err := pgdata.ParseRelationPath(largest)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(datadir, largest))
	if err != nil {
		t.Fatal(err)
	}
	nblocks := uint32(len(file) / pgdata.BlockSize)
	missing := pgdata.RelFileNode{SpcNode: rel.SpcNode, DbNode: rel.DbNode, RelNode: 999999}

	if r := ps.request(t, api.PageRequest{Tag: api.TagExistsRequest, LSN: lsn, Rel: rel, Fork: fork}); !r.Exists {
		t.Errorf("exists %s = %+v", largest, r)
	}
	if r := ps.request(t, api.PageRequest{Tag: api.TagExistsRequest, Latest: true, LSN: lsn, Rel: missing, Fork: fork}); r.Tag != api.TagExistsResponse || r.Exists {
		t.Errorf("exists of a missing relation = %+v", r)
	}
	if r := ps.request(t, api.PageRequest{Tag: api.TagNblocksRequest, Latest: true, LSN: lsn, Rel: rel, Fork: fork}); r.Nblocks != nblocks {
		t.Errorf("nblocks %s = %+v, want %d", largest, r, nblocks)
	}
	for _, blk := range []uint32{0, nblocks / 2, nblocks - 1} {
		r := ps.request(t, api.PageRequest{Tag: api.TagGetPageRequest, LSN: lsn, Rel: rel, Fork: fork, Block: blk})
		if want := file[blk*pgdata.BlockSize : (blk+1)*pgdata.BlockSize]; !bytes.Equal(r.Page, want) {
			t.Errorf("getpage %s block %d: %+v differs from the file's page", largest, blk, r.SQLState+r.Message)
		}
	}
	// getpages of the fork's last 30 blocks (several blocks of the layer
	// file) and two past its end: each answer is what getpage of its
	// block answers, the file's page or, past the end, the error.
	if nblocks < 30 {
		t.Fatalf("%s has %d blocks, fewer than the 30 a getpages request asks for", largest, nblocks)
	}
	first := nblocks - 30
	rs := ps.requestN(t, api.PageRequest{Tag: api.TagGetPagesRequest, LSN: lsn, Rel: rel, Fork: fork, Block: first, Blocks: 32}, 32)
	for i, r := range rs {
		blk := int(first) + i
		if blk >= int(nblocks) {
			if r.Tag != api.TagErrorResponse || r.SQLState != "XX001" {
				t.Errorf("getpages %s block %d, past the end: %+v, want an error XX001", largest, blk, r)
			}
			continue
		}
		if want := file[blk*pgdata.BlockSize : (blk+1)*pgdata.BlockSize]; !bytes.Equal(r.Page, want) {
			t.Errorf("getpages %s block %d: %q differs from the file's page", largest, blk, r.SQLState+r.Message)
		}
	}
	if r := ps.request(t, api.PageRequest{Tag: api.TagDbSizeRequest, Latest: true, LSN: lsn, Rel: pgdata.RelFileNode{DbNode: 5}}); r.DbSize != dbSize {
		t.Errorf("dbsize = %+v, want %d", r, dbSize)
	}
	// Failed requests answer errors, and the stream goes on.
	for _, c := range []struct {
		what string
		req  api.PageRequest
		code string
	}{
		{"nblocks of a missing relation", api.PageRequest{Tag: api.TagNblocksRequest, LSN: lsn, Rel: missing, Fork: fork}, "58P01"},
		{"getpage past the end", api.PageRequest{Tag: api.TagGetPageRequest, LSN: lsn, Rel: rel, Fork: fork, Block: nblocks}, "XX001"},
		{"getpage before the timeline's history", api.PageRequest{Tag: api.TagGetPageRequest, LSN: 0x100, Rel: rel, Fork: fork}, "55000"},
		{"getpage at a future LSN", api.PageRequest{Tag: api.TagGetPageRequest, LSN: lsn + 0x10000, Rel: rel, Fork: fork}, "57014"},
	} {
		if r := ps.request(t, c.req); r.Tag != api.TagErrorResponse || r.SQLState != c.code {
			t.Errorf("%s: %+v, want an error %s", c.what, r, c.code)
		}
	}
	if r := ps.request(t, api.PageRequest{Tag: api.TagGetPageRequest, Latest: true, LSN: lsn, Rel: rel, Fork: fork}); !bytes.Equal(r.Page, file[:pgdata.BlockSize]) {
		t.Errorf("getpage after errors: %+v", r.SQLState+r.Message)
	}
}

// TestPageServiceStreaming drives the page server as the control plane
// does: import, a compute started from a basebackup, callmemaybe so the
// page server streams the compute's WAL as its synchronous standby, then
// branches at an LSN and at a time, each started and checked for the rows
// committed by then.
func TestPageServiceStreaming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ts, conn, tenant, c := startStreamingCompute(ctx, t)
	// With the page server as the synchronous standby, each commit
	// returns only once the page server has the WAL durably.
	exec(t, c, "CREATE TABLE items (n int)", "INSERT INTO items SELECT generate_series(1, 100)")
	first := waitIngested(t, conn, tenant, c)
	// Commit timestamps have microseconds; a time between the two
	// batches picks the first.
	time.Sleep(20 * time.Millisecond)
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	exec(t, c, "INSERT INTO items SELECT generate_series(101, 250)")
	last := waitIngested(t, conn, tenant, c)

	rows(t, conn, fmt.Sprintf("branch_create %s atlsn main@%v", tenant, first))
	rows(t, conn, fmt.Sprintf("branch_create %s attime main@%s", tenant, between.UTC().Format(time.RFC3339Nano)))
	rows(t, conn, fmt.Sprintf("branch_create %s before main@%s", tenant, between.Add(-time.Hour).UTC().Format(time.RFC3339)))
	for _, b := range []struct {
		cmd  string
		want int64
	}{
		{fmt.Sprintf("basebackup %s atlsn", tenant), 100},
		{fmt.Sprintf("basebackup %s attime", tenant), 100},
		{fmt.Sprintf("basebackup %s main %v", tenant, last), 250},
		{fmt.Sprintf("basebackup %s main %v", tenant, first), 100},
	} {
		pg := startFromBasebackup(t, conn, b.cmd, nil)
		bc := connect(t, pg, "postgres")
		wantRows(t, bc, "SELECT count(*) FROM items", b.want)
		bc.Close(ctx)
	}
	// Before any commit, the branch is the imported cluster: no table.
	pg := startFromBasebackup(t, conn, fmt.Sprintf("basebackup %s before", tenant), nil)
	bc := connect(t, pg, "postgres")
	wantRows(t, bc, "SELECT count(*) FROM pg_class WHERE relname = 'items'", 0)
	bc.Close(ctx)

	var timelines []httpapi.TimelineInfo
	httpJSON(t, "GET", "http://"+ts.httpAddr+"/v1/tenant/"+tenant.String()+"/timeline", "", http.StatusOK, &timelines)
	for _, tl := range timelines {
		if tl.Branch == "main" && (tl.WALReceiver == nil || !tl.WALReceiver.Connected || tl.WALReceiver.Flushed < last) {
			t.Errorf("main's WAL receiver: %+v, want connected and flushed to %v", tl.WALReceiver, last)
		}
	}
}

// startStreamingCompute starts a page server with a tenant imported from
// a fresh initdb cluster, and a compute started from main's basebackup
// whose WAL the page server streams as its synchronous standby. It
// returns the page server, a connection to it, the tenant and a
// connection to the compute's postgres database (closed when the test
// ends).
func startStreamingCompute(ctx context.Context, t *testing.T) (*testPageServer, *pgx.Conn, id.TenantID, *pgx.Conn) {
	t.Helper()
	ts := startPageServer(t)
	conn := ts.connect(t)
	tenant := createImportedTenant(t, conn)
	compute := startFromBasebackup(t, conn, fmt.Sprintf("basebackup %s main", tenant), map[string]string{
		"synchronous_standby_names": walreceiver.ReplicationSlot,
		"synchronous_commit":        "on",
		"wal_level":                 "replica",
	})
	callMeMaybe(ctx, t, conn, tenant, compute)
	c := connect(t, compute, "postgres")
	t.Cleanup(func() { c.Close(context.Background()) })
	return ts, conn, tenant, c
}

// createImportedTenant creates a tenant whose main branch is a fresh
// initdb cluster, imported, and returns its id.
func createImportedTenant(t *testing.T, conn *pgx.Conn) id.TenantID {
	t.Helper()
	tenant := id.NewTenantID()
	rows(t, conn, "tenant_create "+tenant.String())
	if err := importDataDir(conn, tenant, "main", initdbDir(t), nil); err != nil {
		t.Fatal(err)
	}
	return tenant
}

// callMeMaybe points main's WAL receiver at compute.
func callMeMaybe(ctx context.Context, t *testing.T, conn *pgx.Conn, tenant id.TenantID, compute *pgcluster.Cluster) {
	t.Helper()
	cmd := fmt.Sprintf("callmemaybe %s main %s", tenant, compute.ConnString("postgres"))
	if res, err := conn.PgConn().Exec(ctx, cmd).ReadAll(); err != nil || res[0].CommandTag.String() != "CALLMEMAYBE" {
		t.Fatalf("%s: %v %v", cmd, res, err)
	}
}

// startFromBasebackup starts a PostgreSQL server on the tar a basebackup
// command returns.
func startFromBasebackup(t *testing.T, conn *pgx.Conn, cmd string, settings map[string]string) *pgcluster.Cluster {
	t.Helper()
	var tarball bytes.Buffer
	if _, err := conn.PgConn().CopyTo(context.Background(), &tarball, cmd); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	pg := newClusterFromTar(t, tarball.Bytes(), settings)
	if err := pg.Start(context.Background()); err != nil {
		t.Fatalf("start a server on %s: %v", cmd, err)
	}
	assertCleanStart(t, pg)
	return pg
}

// waitIngested waits until main's last record reaches the compute's
// flushed WAL, and returns it.
func waitIngested(t *testing.T, conn *pgx.Conn, tenant id.TenantID, compute *pgx.Conn) pgdata.LSN {
	t.Helper()
	var s string
	if err := compute.QueryRow(context.Background(), "SELECT pg_current_wal_flush_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	want, err := pgdata.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		main := branchNamed(t, rows(t, conn, "branch_list "+tenant.String()), "main")
		last, err := pgdata.ParseLSN(main["last_record_lsn"])
		if err != nil {
			t.Fatal(err)
		}
		if last >= want {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("main is at %v, the compute flushed %v", last, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
