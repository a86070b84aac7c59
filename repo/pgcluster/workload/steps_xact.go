package workload

import (
	"context"
	"fmt"
)

// The databases the databases step creates and keeps, and the one it
// drops.
const (
	DatabaseWALLog   = "wl_db_wal_log"
	DatabaseFileCopy = "wl_db_file_copy"
	databaseDropped  = "wl_db_dropped"
)

func stepTwoPhase(ctx context.Context, w *runner) error {
	return w.exec(ctx,
		`CREATE TABLE wl_tpc (id int PRIMARY KEY, v text)`,
		`BEGIN`,
		`INSERT INTO wl_tpc SELECT g, 'committed' FROM generate_series(1, 100) g`,
		`SAVEPOINT s1`,
		`INSERT INTO wl_tpc VALUES (1000, 'in a subtransaction')`,
		`PREPARE TRANSACTION 'wl_commit'`,
		`COMMIT PREPARED 'wl_commit'`,
		`BEGIN`,
		`UPDATE wl_tpc SET v = 'rolled back' WHERE id <= 50`,
		`PREPARE TRANSACTION 'wl_rollback'`,
		`ROLLBACK PREPARED 'wl_rollback'`,
		// Prepared across a checkpoint: CheckPointTwoPhase writes its state
		// file to pg_twophase.
		`BEGIN`,
		`DELETE FROM wl_tpc WHERE id > 90`,
		`PREPARE TRANSACTION 'wl_across_checkpoint'`,
		`CHECKPOINT`,
		`COMMIT PREPARED 'wl_across_checkpoint'`,
	)
}

func stepSubtransactions(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE TABLE wl_subxact (id int, v text)`,
		`BEGIN`,
		`INSERT INTO wl_subxact VALUES (1, 'top')`,
		`SAVEPOINT a`,
		`INSERT INTO wl_subxact VALUES (2, 'rolled back')`,
		`ROLLBACK TO a`,
		`SAVEPOINT b`,
		`INSERT INTO wl_subxact VALUES (3, 'released')`,
		`RELEASE b`,
		`COMMIT`,
	); err != nil {
		return err
	}
	// More subtransactions with an XID than a backend caches
	// (PGPROC_MAX_CACHED_SUBXIDS, 64): XLOG_XACT_ASSIGNMENT.
	stmts := []string{`BEGIN`}
	for i := 0; i < 70; i++ {
		stmts = append(stmts, fmt.Sprintf(`SAVEPOINT s%d`, i), fmt.Sprintf(`INSERT INTO wl_subxact VALUES (%d, 'nested')`, 100+i))
	}
	stmts = append(stmts, `COMMIT`)
	if err := w.exec(ctx, stmts...); err != nil {
		return err
	}
	// A transaction that aborts after writing.
	return w.exec(ctx,
		`BEGIN`,
		fmt.Sprintf(`INSERT INTO wl_subxact SELECT g, 'aborted' FROM generate_series(1, %d) g`, w.n(500)),
		`ROLLBACK`,
	)
}

func stepDatabases(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE DATABASE `+DatabaseWALLog+` STRATEGY WAL_LOG`,
		`CREATE DATABASE `+DatabaseFileCopy+` STRATEGY FILE_COPY`,
		`CREATE DATABASE `+databaseDropped+` STRATEGY WAL_LOG`,
	); err != nil {
		return err
	}
	for _, db := range []string{DatabaseWALLog, DatabaseFileCopy, databaseDropped} {
		conn, err := w.connect(ctx, db)
		if err != nil {
			return err
		}
		err = execOn(ctx, conn,
			`CREATE TABLE wl_in_db (id int PRIMARY KEY, v text)`,
			fmt.Sprintf(`INSERT INTO wl_in_db SELECT g, md5(g::text) FROM generate_series(1, %d) g`, w.n(1000)),
		)
		conn.Close(context.Background())
		if err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
	}
	w.databases = append(w.databases, DatabaseWALLog, DatabaseFileCopy)
	return w.exec(ctx, `DROP DATABASE `+databaseDropped)
}

func stepTruncate(ctx context.Context, w *runner) error {
	rows := w.n(3000)
	return w.exec(ctx,
		`CREATE TABLE wl_trunc (id int PRIMARY KEY, v text)`,
		fmt.Sprintf(`INSERT INTO wl_trunc SELECT g, md5(g::text) FROM generate_series(1, %d) g`, rows),
		`TRUNCATE wl_trunc`,
		fmt.Sprintf(`INSERT INTO wl_trunc SELECT g, md5(g::text) FROM generate_series(1, %d) g`, rows),
		// An empty tail that VACUUM cuts off the heap.
		fmt.Sprintf(`DELETE FROM wl_trunc WHERE id > %d`, rows/5),
		`VACUUM wl_trunc`,
		`VACUUM FULL wl_copy`,
	)
}

func stepVacuumFreeze(ctx context.Context, w *runner) error {
	return w.exec(ctx,
		`VACUUM FREEZE wl_heap`,
		`VACUUM FREEZE wl_copy`,
		`VACUUM FREEZE wl_toast`,
		`VACUUM FULL pg_class`,
	)
}

func stepWALMisc(ctx context.Context, w *runner) error {
	return w.exec(ctx,
		`SELECT pg_logical_emit_message(true, 'zenith', 'transactional message')`,
		`SELECT pg_logical_emit_message(false, 'zenith', 'non-transactional message')`,
		`SELECT pg_create_restore_point('zenith workload')`,
		`SELECT pg_switch_wal()`,
		// Something after the switch, so the next segment has records.
		`INSERT INTO wl_subxact VALUES (0, 'after the switch')`,
	)
}
