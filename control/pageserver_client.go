package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// PageserverClient talks to a page server over its page service (libpq):
// the only way the control plane learns or changes anything there, so the
// same commands work against a page server on another host.
type PageserverClient struct {
	// Addr is the page service's host:port.
	Addr string
	// Client is the token and CA it presents.
	Client auth.ClientOptions
	// clientErr is why Client could not be made: every call returns it.
	clientErr error
}

// PageserverError is an error the page server answered with.
type PageserverError struct {
	Command string
	Code    string // SQLSTATE
	Message string
}

func (e *PageserverError) Error() string {
	return fmt.Sprintf("page server: %s (SQLSTATE %s)", e.Message, e.Code)
}

// dialTimeout bounds connecting to the page server, so a command against
// a page server that is down fails quickly.
const dialTimeout = 5 * time.Second

func (c *PageserverClient) connect(ctx context.Context) (*pgconn.PgConn, error) {
	if c.clientErr != nil {
		return nil, c.clientErr
	}
	return dial(ctx, c.Addr, "page server", c.Client)
}

// dial opens a libpq connection to a zenith service (what names it in
// messages) at addr, host:port, presenting client's token and checking
// the server's certificate against client's CA.
func dial(ctx context.Context, addr, what string, client auth.ClientOptions) (*pgconn.PgConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s address %q: %w", what, addr, err)
	}
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=zenith dbname=zenith application_name=zenith-cli %s", host, port, client.ConnParams()))
	if err != nil {
		return nil, fmt.Errorf("%s address %q: %w", what, addr, err)
	}
	cfg.ConnectTimeout = dialTimeout
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the %s at %s (is it running? zenith start starts it): %w", what, addr, err)
	}
	return conn, nil
}

// wrap turns a server error into a *PageserverError.
func wrap(command string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &PageserverError{Command: command, Code: pgErr.Code, Message: pgErr.Message}
	}
	return fmt.Errorf("page server %s: %w", command, err)
}

// query runs one simple-protocol command and returns its rows as maps from
// column name to text value.
func (c *PageserverClient) query(ctx context.Context, command string) ([]map[string]string, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	results, err := conn.Exec(ctx, command).ReadAll()
	if err != nil {
		return nil, wrap(command, err)
	}
	var rows []map[string]string
	for _, r := range results {
		if r.Err != nil {
			return nil, wrap(command, r.Err)
		}
		for _, vals := range r.Rows {
			row := make(map[string]string, len(vals))
			for i, fd := range r.FieldDescriptions {
				row[fd.Name] = string(vals[i])
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// Ping checks that the page server answers identify_system as a page
// server.
func (c *PageserverClient) Ping(ctx context.Context) error {
	rows, err := c.query(ctx, api.IdentifySystem{}.String())
	if err != nil {
		return err
	}
	if len(rows) != 1 || rows[0]["server"] != "zenith-pageserver" {
		return fmt.Errorf("%s answered identify_system with %v: not a zenith page server", c.Addr, rows)
	}
	return nil
}

// Status returns the page server's `status` row.
func (c *PageserverClient) Status(ctx context.Context) (map[string]string, error) {
	rows, err := c.query(ctx, api.Status{}.String())
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("page server status: %d rows, want 1", len(rows))
	}
	return rows[0], nil
}

// TenantCreate creates a tenant, with a fresh id when t is zero, at
// generation gen (0: none; only with an id).
func (c *PageserverClient) TenantCreate(ctx context.Context, t id.TenantID, gen uint32) (id.TenantID, error) {
	rows, err := c.query(ctx, api.TenantCreate{Tenant: t, Generation: gen}.String())
	if err != nil {
		return id.TenantID{}, err
	}
	if len(rows) != 1 {
		return id.TenantID{}, fmt.Errorf("tenant_create: %d rows, want 1", len(rows))
	}
	return id.ParseTenantID(rows[0]["tenant_id"])
}

// TenantList returns the page server's tenants.
func (c *PageserverClient) TenantList(ctx context.Context) ([]id.TenantID, error) {
	rows, err := c.query(ctx, api.TenantList{}.String())
	if err != nil {
		return nil, err
	}
	ids := make([]id.TenantID, 0, len(rows))
	for _, r := range rows {
		t, err := id.ParseTenantID(r["tenant_id"])
		if err != nil {
			return nil, fmt.Errorf("tenant_list: %w", err)
		}
		ids = append(ids, t)
	}
	return ids, nil
}

// BranchList returns the branches of tenant t.
func (c *PageserverClient) BranchList(ctx context.Context, t id.TenantID) ([]api.BranchInfo, error) {
	rows, err := c.query(ctx, api.BranchList{Tenant: t}.String())
	if err != nil {
		return nil, err
	}
	branches := make([]api.BranchInfo, 0, len(rows))
	for _, r := range rows {
		b, err := api.ParseBranchRow(r)
		if err != nil {
			return nil, fmt.Errorf("branch_list: %w", err)
		}
		branches = append(branches, b)
	}
	return branches, nil
}

// Branch returns branch name of tenant t without its sizes, which the
// page server does not compute for it (BranchList does, for every
// branch): what starting a compute needs, quickly.
func (c *PageserverClient) Branch(ctx context.Context, t id.TenantID, name string) (api.BranchInfo, error) {
	cmd := api.BranchList{Tenant: t, Branch: name}
	rows, err := c.query(ctx, cmd.String())
	if err != nil {
		return api.BranchInfo{}, err
	}
	if len(rows) != 1 {
		return api.BranchInfo{}, fmt.Errorf("%s: %d rows, want 1", cmd.Name(), len(rows))
	}
	b, err := api.ParseBranchRow(rows[0])
	if err != nil {
		return api.BranchInfo{}, fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	return b, nil
}

// BranchCreate creates branch name of tenant t at start.
func (c *PageserverClient) BranchCreate(ctx context.Context, t id.TenantID, name string, start api.StartPoint) (api.BranchInfo, error) {
	rows, err := c.query(ctx, api.BranchCreate{Tenant: t, Branch: name, Start: start}.String())
	if err != nil {
		return api.BranchInfo{}, err
	}
	if len(rows) != 1 {
		return api.BranchInfo{}, fmt.Errorf("branch_create: %d rows, want 1", len(rows))
	}
	return api.ParseBranchRow(rows[0])
}

// BranchDelete deletes branch (a name or a timeline id) of tenant t.
func (c *PageserverClient) BranchDelete(ctx context.Context, t id.TenantID, branch string) error {
	_, err := c.query(ctx, api.BranchDelete{Tenant: t, Timeline: branch}.String())
	return err
}

// TenantDelete deletes tenant t with everything it holds.
func (c *PageserverClient) TenantDelete(ctx context.Context, t id.TenantID) error {
	_, err := c.query(ctx, api.TenantDelete{Tenant: t}.String())
	return err
}

// Import sends a tar of a cleanly shut down data directory, read from r,
// as the new branch name of tenant t.
func (c *PageserverClient) Import(ctx context.Context, t id.TenantID, name string, r io.Reader) error {
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	cmd := api.Import{Tenant: t, Branch: name}.String()
	if _, err := conn.CopyFrom(ctx, r, cmd); err != nil {
		return wrap(cmd, err)
	}
	return nil
}

// Basebackup writes the tar of timeline tl of tenant t at lsn (0: its last
// record) to w; a lazy one lists the relation files instead of holding
// them (api.LazyManifest).
func (c *PageserverClient) Basebackup(ctx context.Context, t id.TenantID, tl id.TimelineID, lsn pgdata.LSN, lazy bool, w io.Writer) error {
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	cmd := api.Basebackup{Tenant: t, Timeline: tl.String(), LSN: lsn, Lazy: lazy}.String()
	if _, err := conn.CopyTo(ctx, w, cmd); err != nil {
		return wrap(cmd, err)
	}
	return nil
}

// Safekeepers makes the WAL receiver of timeline tl stream from the
// safekeepers at addrs (host:port), up to their commit LSN.
func (c *PageserverClient) Safekeepers(ctx context.Context, t id.TenantID, tl id.TimelineID, addrs []string) error {
	_, err := c.query(ctx, api.Safekeepers{Tenant: t, Timeline: tl.String(), Addrs: addrs}.String())
	return err
}

// CallMeMaybe points the WAL receiver of timeline tl at connStr, a compute
// that the page server should stream WAL from.
func (c *PageserverClient) CallMeMaybe(ctx context.Context, t id.TenantID, tl id.TimelineID, connStr string) error {
	_, err := c.query(ctx, api.CallMeMaybe{Tenant: t, Timeline: tl.String(), ConnStr: connStr}.String())
	return err
}
