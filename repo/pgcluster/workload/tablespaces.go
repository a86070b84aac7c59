package workload

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The tablespaces and databases the tablespace workload leaves in place.
const (
	// TablespaceInPlace is an in-place tablespace (an empty LOCATION), as
	// PostgreSQL's own regression suite makes them.
	TablespaceInPlace = "tsw_inplace"
	// TablespaceLocation is made at the location Tablespaces is given.
	TablespaceLocation = "tsw_location"
)

// TablespaceWALLogDatabases are the databases the tablespace workload
// keeps whose catalogs were copied from their template with STRATEGY
// WAL_LOG (PostgreSQL 15's default), directly or by a FILE_COPY of such a
// database: their visibility-map pages differ from a copy made from the
// WAL (log_newpage_buffer leaves the map in the image's hole).
var TablespaceWALLogDatabases = []string{"tsw_wal", "tsw_wal_copy", "tsw_file_copy2", "tsw_move"}

// Tablespaces runs the tablespace workload on the server connString
// names (connected to any database; the superuser), with location an
// empty directory the server's OS user owns, for CREATE TABLESPACE ...
// LOCATION. It writes every record tablespaces add to the WAL and each
// way PostgreSQL 15 moves files between tablespaces:
//
//   - CREATE TABLESPACE in place (an empty LOCATION, allow_in_place_tablespaces)
//     and at location; one more that is emptied and dropped (DROP
//     TABLESPACE, which removes the database directories left in it);
//   - tables (with TOAST) and indexes created in a tablespace; ALTER TABLE
//     and ALTER INDEX ... SET TABLESPACE (a copy of every page as
//     full-page images); ALTER TABLE ALL IN TABLESPACE;
//   - CREATE DATABASE ... TABLESPACE with STRATEGY WAL_LOG and FILE_COPY,
//     and a FILE_COPY of a template whose relations are in three
//     tablespaces (one record per tablespace directory);
//   - ALTER DATABASE ... SET TABLESPACE (movedb: a FILE_COPY record for the
//     new directory, then a drop record for the old one);
//   - DROP DATABASE of a database with relations in three tablespaces
//     (one drop record naming each).
//
// Like Run it leaves no transaction open; unlike Run it is not
// randomized.
func Tablespaces(ctx context.Context, connString, location string) error {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return fmt.Errorf("tablespace workload: %w", err)
	}
	on := func(db string, stmts ...string) error {
		c := cfg.Copy()
		c.Database = db
		conn, err := pgx.ConnectConfig(ctx, c)
		if err != nil {
			return fmt.Errorf("tablespace workload: connect to database %s: %w", db, err)
		}
		defer conn.Close(ctx)
		if err := execOn(ctx, conn, stmts...); err != nil {
			return fmt.Errorf("tablespace workload, database %s: %w", db, err)
		}
		return nil
	}
	wide := `(SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 80) i)` // incompressible: TOAST
	err = on(cfg.Database,
		`SET allow_in_place_tablespaces = on`,
		`CREATE TABLESPACE `+TablespaceInPlace+` LOCATION ''`,
		`CREATE TABLESPACE `+TablespaceLocation+` LOCATION '`+strings.ReplaceAll(location, "'", "''")+`'`,
		`CREATE TABLESPACE tsw_gone LOCATION ''`,

		`CREATE TABLE tsw_a (id int PRIMARY KEY, v text, big text) TABLESPACE `+TablespaceLocation,
		`INSERT INTO tsw_a SELECT g, md5(g::text), CASE WHEN g % 50 = 0 THEN `+wide+` END FROM generate_series(1, 3000) g`,
		`CREATE INDEX tsw_a_v ON tsw_a (v) TABLESPACE `+TablespaceInPlace,
		`CREATE TABLE tsw_serial (id bigserial, v int) TABLESPACE `+TablespaceInPlace,
		`INSERT INTO tsw_serial (v) SELECT generate_series(1, 100)`,
		`CREATE TABLE tsw_b (id int, v text)`,
		`INSERT INTO tsw_b SELECT g, repeat('b', 50) FROM generate_series(1, 2000) g`,
		`CREATE INDEX tsw_b_id ON tsw_b (id)`,
		`ALTER TABLE tsw_b SET TABLESPACE `+TablespaceInPlace,
		`ALTER INDEX tsw_b_id SET TABLESPACE `+TablespaceLocation,
		`ALTER INDEX tsw_a_pkey SET TABLESPACE `+TablespaceInPlace,
		`UPDATE tsw_a SET v = v || 'x' WHERE id % 7 = 0`,
		`DELETE FROM tsw_b WHERE id % 3 = 0`,

		`CREATE TABLE tsw_gone_t (id int) TABLESPACE tsw_gone`,
		`INSERT INTO tsw_gone_t SELECT generate_series(1, 500)`,
		`DROP TABLE tsw_gone_t`,
		`DROP TABLESPACE tsw_gone`,

		`CREATE TABLE tsw_d (id int, v text) TABLESPACE `+TablespaceInPlace,
		`INSERT INTO tsw_d SELECT g, 'd' FROM generate_series(1, 1000) g`,
		`ALTER TABLE ALL IN TABLESPACE `+TablespaceInPlace+` SET TABLESPACE `+TablespaceLocation,

		`CREATE DATABASE tsw_wal TABLESPACE `+TablespaceLocation+` STRATEGY WAL_LOG`,
		`CREATE DATABASE tsw_file_copy TABLESPACE `+TablespaceInPlace+` STRATEGY FILE_COPY`,
	)
	if err != nil {
		return err
	}
	// A template with relations in its own tablespace and two others.
	err = on("tsw_wal",
		`CREATE TABLE w1 (id int PRIMARY KEY, v text)`,
		`INSERT INTO w1 SELECT g, md5(g::text) FROM generate_series(1, 1000) g`,
		`CREATE TABLE w2 (id int) TABLESPACE pg_default`,
		`INSERT INTO w2 SELECT generate_series(1, 700)`,
		`CREATE TABLE w3 (id int) TABLESPACE `+TablespaceInPlace,
		`INSERT INTO w3 SELECT generate_series(1, 300)`,
		`CREATE INDEX w3_id ON w3 (id) TABLESPACE pg_default`,
	)
	if err != nil {
		return err
	}
	err = on("tsw_file_copy", `CREATE TABLE f1 (id int) TABLESPACE pg_default`, `INSERT INTO f1 SELECT generate_series(1, 100)`)
	if err != nil {
		return err
	}
	err = on(cfg.Database,
		`CREATE DATABASE tsw_file_copy2 TEMPLATE tsw_wal STRATEGY FILE_COPY`,
		`CREATE DATABASE tsw_wal_copy TEMPLATE tsw_wal STRATEGY WAL_LOG`,
		`CREATE DATABASE tsw_move`,
		`CREATE DATABASE tsw_drop TABLESPACE `+TablespaceInPlace,
	)
	if err != nil {
		return err
	}
	err = on("tsw_move", `CREATE TABLE m1 (id int, v text)`, `INSERT INTO m1 SELECT g, 'm' FROM generate_series(1, 1500) g`,
		`CREATE INDEX m1_id ON m1 (id)`)
	if err != nil {
		return err
	}
	err = on("tsw_drop",
		`CREATE TABLE x1 (id int)`, `INSERT INTO x1 SELECT generate_series(1, 100)`,
		`CREATE TABLE x2 (id int) TABLESPACE pg_default`, `INSERT INTO x2 SELECT generate_series(1, 100)`,
		`CREATE TABLE x3 (id int) TABLESPACE `+TablespaceLocation, `INSERT INTO x3 SELECT generate_series(1, 100)`)
	if err != nil {
		return err
	}
	return on(cfg.Database,
		`ALTER DATABASE tsw_move SET TABLESPACE `+TablespaceLocation,
		`DROP DATABASE tsw_drop`,
	)
}
