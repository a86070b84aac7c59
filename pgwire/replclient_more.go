package pgwire

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// ConnectReplicationAs is ConnectReplication with a default
// application_name: the name a primary knows the client by in
// synchronous_standby_names and pg_stat_replication. A connection string
// that sets application_name itself keeps its own.
func ConnectReplicationAs(ctx context.Context, connStr, appName string) (*ReplicationConn, error) {
	cfg, err := pgconn.ParseConfig(connStr)
	if err != nil {
		return nil, fmt.Errorf("replication connection string: %w", err)
	}
	cfg.RuntimeParams["replication"] = "true"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = appName
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", err)
	}
	return &ReplicationConn{conn: c}, nil
}
