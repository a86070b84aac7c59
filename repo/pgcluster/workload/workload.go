package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// Settings returns the server settings the mixed workload needs, to be
// passed to the cluster it runs on:
//   - wal_level=replica and full_page_writes=on: the WAL a compute writes;
//   - max_prepared_transactions > 0 for the two-phase commit step;
//   - autovacuum=off, a long checkpoint_timeout and a big max_wal_size, so
//     that VACUUM and checkpoints happen where the workload puts them and
//     nowhere else;
//   - wal_keep_size big enough that every segment the workload writes stays
//     in pg_wal for the oracles that read it back afterwards.
func Settings() map[string]string {
	return map[string]string{
		"wal_level":                 "replica",
		"full_page_writes":          "on",
		"max_prepared_transactions": "10",
		"autovacuum":                "off",
		"checkpoint_timeout":        "1h",
		"max_wal_size":              "16GB",
		"wal_keep_size":             "16GB",
	}
}

// Options tune the mixed workload.
type Options struct {
	// Seed makes the run reproducible: the same seed sends the same
	// statements with the same data.
	Seed int64
	// Scale multiplies every row count; 0 means 1, which writes more than
	// 100,000 WAL records and every record type the steps promise. Below 1
	// the run is quicker but may miss the record types that need volume
	// (posting trees, hash bucket splits, prefix splits, page deletions).
	Scale float64
	// AfterStep, if set, is called after each step with the step's report,
	// e.g. to note an LSN or take a pg_dump at a quiet point. An error ends
	// the run.
	AfterStep func(ctx context.Context, step StepReport) error
	// Log receives one line per step; the zero Logger discards them.
	Log zerolog.Logger
}

// StepReport is what one step of the workload did.
type StepReport struct {
	Name string
	// Start and End are the WAL insert positions before and after the
	// step (pg_current_wal_insert_lsn()).
	Start, End pgdata.LSN
	// Records are the WAL record types, "Rmgr/TYPE" as pg_waldump names
	// them (e.g. "Btree/SPLIT_L"), that the step always writes between
	// Start and End.
	Records  []string
	Duration time.Duration
}

// Report is what a run of the mixed workload did.
type Report struct {
	Steps []StepReport
	// Databases are the databases the workload created and left in place
	// (besides the one it ran in).
	Databases []string
}

// step is one part of the workload.
type step struct {
	name string
	// records are the record types the step always produces (see
	// StepReport.Records).
	records []string
	run     func(ctx context.Context, w *runner) error
}

// runner carries a run's connection and random source.
type runner struct {
	conn  *pgx.Conn
	cfg   *pgx.ConnConfig
	rnd   *rand.Rand
	scale float64
	seed  int64
	// databases created and kept, for the report.
	databases []string
}

// n scales a row count, never below 1.
func (w *runner) n(base int) int {
	v := int(float64(base) * w.scale)
	if v < 1 {
		return 1
	}
	return v
}

// exec runs statements one by one, each in its own implicit transaction
// unless they contain BEGIN/COMMIT themselves.
func (w *runner) exec(ctx context.Context, stmts ...string) error {
	return execOn(ctx, w.conn, stmts...)
}

func execOn(ctx context.Context, conn *pgx.Conn, stmts ...string) error {
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return nil
}

// connect opens another connection, to the workload's database or, if
// dbname is not empty, to another one.
func (w *runner) connect(ctx context.Context, dbname string) (*pgx.Conn, error) {
	cfg := w.cfg.Copy()
	if dbname != "" {
		cfg.Database = dbname
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database %s: %w", cfg.Database, err)
	}
	return conn, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	return s
}

// insertLSN is the current WAL insert position.
func insertLSN(ctx context.Context, conn *pgx.Conn) (pgdata.LSN, error) {
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, fmt.Errorf("read WAL insert position: %w", err)
	}
	return pgdata.ParseLSN(s)
}

// Run runs the mixed workload in the database connString names, which
// must be a database of a cluster the workload has not run on before (it
// creates fixed table and database names), with Settings applied. It
// returns what each step did; on error, the steps done so far and the
// error naming the failing step and statement.
func Run(ctx context.Context, connString string, opts Options) (*Report, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("workload: connect: %w", err)
	}
	defer conn.Close(context.Background())
	scale := opts.Scale
	if scale <= 0 {
		scale = 1
	}
	w := &runner{
		conn:  conn,
		cfg:   cfg,
		rnd:   rand.New(rand.NewPCG(uint64(opts.Seed), 0x7a656e697468)),
		scale: scale,
		seed:  opts.Seed,
	}
	rep := &Report{}
	for _, s := range steps() {
		// A checkpoint before every step: the step's first change to each
		// page carries a full-page image, later ones do not.
		if err := w.exec(ctx, "CHECKPOINT"); err != nil {
			return rep, fmt.Errorf("workload step %s: %w", s.name, err)
		}
		start, err := insertLSN(ctx, conn)
		if err != nil {
			return rep, err
		}
		began := time.Now()
		if err := s.run(ctx, w); err != nil {
			return rep, fmt.Errorf("workload step %s: %w", s.name, err)
		}
		end, err := insertLSN(ctx, conn)
		if err != nil {
			return rep, err
		}
		sr := StepReport{Name: s.name, Start: start, End: end, Records: s.records, Duration: time.Since(began)}
		rep.Steps = append(rep.Steps, sr)
		opts.Log.Info().Str("step", s.name).Stringer("start", start).Stringer("end", end).
			Dur("took", sr.Duration).Msg("workload step done")
		if opts.AfterStep != nil {
			if err := opts.AfterStep(ctx, sr); err != nil {
				return rep, fmt.Errorf("after workload step %s: %w", s.name, err)
			}
		}
	}
	rep.Databases = w.databases
	return rep, nil
}
