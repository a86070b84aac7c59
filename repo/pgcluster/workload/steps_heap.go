package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/jackc/pgx/v5"
)

// heapRows is how many rows heap_insert puts in wl_heap (ids 1..heapRows),
// at scale 1.
const heapRows = 11000

func stepSchema(ctx context.Context, w *runner) error {
	return w.exec(ctx,
		`CREATE TABLE wl_heap (id int PRIMARY KEY, grp int NOT NULL, val int NOT NULL, note text)
		 WITH (fillfactor = 80)`,
		`CREATE INDEX wl_heap_grp ON wl_heap (grp)`,
		`CREATE INDEX wl_heap_val ON wl_heap (val)`,
	)
}

func stepSequences(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE SEQUENCE wl_seq CACHE 1`,
		fmt.Sprintf(`SELECT nextval('wl_seq') FROM generate_series(1, %d)`, w.n(100)),
		`ALTER SEQUENCE wl_seq RESTART WITH 1000`,
		fmt.Sprintf(`SELECT setval('wl_seq', %d)`, 5000+w.rnd.IntN(1000)),
		`CREATE TABLE wl_serial (id bigserial PRIMARY KEY, v int)`,
	); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for i := 0; i < w.n(300); i++ {
		b.Queue(`INSERT INTO wl_serial (v) VALUES ($1)`, w.rnd.Int32())
	}
	return sendBatch(ctx, w.conn, b)
}

// sendBatch sends b as one pipeline (an implicit transaction) and checks
// every statement's result.
func sendBatch(ctx context.Context, conn *pgx.Conn, b *pgx.Batch) error {
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("batch of %d statements: %w", b.Len(), err)
	}
	return nil
}

func stepHeapInsert(ctx context.Context, w *runner) error {
	rows := w.n(heapRows)
	single := rows / 11
	// One statement per row.
	b := &pgx.Batch{}
	for id := 1; id <= single; id++ {
		b.Queue(`INSERT INTO wl_heap VALUES ($1, $2, $3, $4)`, id, w.rnd.IntN(8), w.rnd.Int32(), randWord(w.rnd, 8, 30))
	}
	if err := sendBatch(ctx, w.conn, b); err != nil {
		return err
	}
	// One statement for the rest; still one heap_insert per row.
	var ids, grps, vals []int32
	var notes []string
	for id := single + 1; id <= rows-100; id++ {
		ids = append(ids, int32(id))
		grps = append(grps, int32(w.rnd.IntN(8)))
		vals = append(vals, w.rnd.Int32())
		notes = append(notes, randWord(w.rnd, 8, 30))
	}
	if _, err := w.conn.Exec(ctx, `INSERT INTO wl_heap SELECT * FROM unnest($1::int[], $2::int[], $3::int[], $4::text[])`,
		ids, grps, vals, notes); err != nil {
		return fmt.Errorf("bulk insert into wl_heap: %w", err)
	}
	// Upsert the last 200 ids: half exist (updated), half are new
	// (speculative insertions).
	b = &pgx.Batch{}
	for id := rows - 200; id < rows; id++ {
		b.Queue(`INSERT INTO wl_heap VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET note = excluded.note`,
			id+1, w.rnd.IntN(8), w.rnd.Int32(), randWord(w.rnd, 8, 30))
	}
	return sendBatch(ctx, w.conn, b)
}

func stepCopy(ctx context.Context, w *runner) error {
	if err := w.exec(ctx, `CREATE TABLE wl_copy (id int PRIMARY KEY, grp int, body text)`); err != nil {
		return err
	}
	if err := copyRows(ctx, w.conn, `COPY wl_copy FROM STDIN`, w.n(10000), func(sb *strings.Builder, i int) {
		fmt.Fprintf(sb, "%d\t%d\t%s\n", i, w.rnd.IntN(100), randWord(w.rnd, 20, 120))
	}); err != nil {
		return err
	}
	if err := w.exec(ctx, `BEGIN`, `CREATE TABLE wl_frozen (id int, body text)`); err != nil {
		return err
	}
	if err := copyRows(ctx, w.conn, `COPY wl_frozen FROM STDIN (FREEZE)`, w.n(5000), func(sb *strings.Builder, i int) {
		fmt.Fprintf(sb, "%d\t%s\n", i, randWord(w.rnd, 20, 120))
	}); err != nil {
		_ = w.exec(ctx, `ROLLBACK`)
		return err
	}
	return w.exec(ctx, `COMMIT`)
}

// copyRows sends n rows, written by row(i) for i in 1..n in COPY's text
// format, with the COPY statement sql.
func copyRows(ctx context.Context, conn *pgx.Conn, sql string, n int, row func(sb *strings.Builder, i int)) error {
	var sb strings.Builder
	for i := 1; i <= n; i++ {
		row(&sb, i)
	}
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(sb.String()), sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func stepToast(ctx context.Context, w *runner) error {
	if err := w.exec(ctx, `CREATE TABLE wl_toast (id int PRIMARY KEY, doc text)`); err != nil {
		return err
	}
	rows := w.n(200)
	b := &pgx.Batch{}
	for id := 1; id <= rows; id++ {
		b.Queue(`INSERT INTO wl_toast VALUES ($1, $2)`, id, toastValue(w.rnd, id))
	}
	if err := sendBatch(ctx, w.conn, b); err != nil {
		return err
	}
	// Replace a quarter of the documents and delete a few: the old chunks
	// are deleted from the TOAST relation.
	b = &pgx.Batch{}
	for i := 0; i < rows/4; i++ {
		id := 1 + w.rnd.IntN(rows)
		b.Queue(`UPDATE wl_toast SET doc = $2 WHERE id = $1`, id, toastValue(w.rnd, id))
	}
	for i := 0; i < rows/10; i++ {
		b.Queue(`DELETE FROM wl_toast WHERE id = $1`, 1+w.rnd.IntN(rows))
	}
	return sendBatch(ctx, w.conn, b)
}

// toastValue is a value stored out of line: random letters that pglz
// cannot compress, or, for every fourth id, words from a small vocabulary
// that compress but stay too big to keep inline.
func toastValue(rnd *rand.Rand, id int) string {
	if id%4 == 0 {
		var sb strings.Builder
		for sb.Len() < 40000 {
			sb.WriteString(vocabulary[rnd.IntN(len(vocabulary))])
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	return randAlnum(rnd, 6000+rnd.IntN(10000))
}

func stepUpdate(ctx context.Context, w *runner) error {
	rows := w.n(heapRows)
	// HOT: only the non-indexed note changes. Several rounds over the same
	// pages, so their HOT chains get pruned.
	for round := 0; round < 3; round++ {
		b := &pgx.Batch{}
		for i := 0; i < w.n(2000); i++ {
			b.Queue(`UPDATE wl_heap SET note = $2 WHERE id = $1`, 1+w.rnd.IntN(rows), randWord(w.rnd, 8, 30))
		}
		if err := sendBatch(ctx, w.conn, b); err != nil {
			return err
		}
	}
	// Not HOT: indexed columns change.
	b := &pgx.Batch{}
	for i := 0; i < w.n(2000); i++ {
		b.Queue(`UPDATE wl_heap SET grp = $2, val = $3 WHERE id = $1`, 1+w.rnd.IntN(rows), w.rnd.IntN(8), w.rnd.Int32())
	}
	if err := sendBatch(ctx, w.conn, b); err != nil {
		return err
	}
	return w.exec(ctx, `UPDATE wl_heap SET val = val + 1 WHERE id % 10 = 3`)
}

func stepDelete(ctx context.Context, w *runner) error {
	rows := w.n(heapRows)
	// Random rows from the top half, then a contiguous 40% of the ids, so
	// that VACUUM finds btree leaf pages with nothing left on them.
	b := &pgx.Batch{}
	for i := 0; i < w.n(1000); i++ {
		b.Queue(`DELETE FROM wl_heap WHERE id = $1`, rows/2+w.rnd.IntN(rows/2)+1)
	}
	if err := sendBatch(ctx, w.conn, b); err != nil {
		return err
	}
	_, err := w.conn.Exec(ctx, `DELETE FROM wl_heap WHERE id BETWEEN $1 AND $2`, rows/10, rows/2)
	if err != nil {
		return fmt.Errorf("delete a range of wl_heap: %w", err)
	}
	return nil
}

// stepRowLocks takes row locks from several open transactions at once, in
// a fixed order (none of them waits, so the WAL is the same every run):
//
//	A: FOR KEY SHARE rows 1..2k      B: FOR SHARE rows 1..k (MultiXact A+B)
//	C: FOR KEY SHARE rows k+1..2k (MultiXact A+C)
//	A: UPDATE note of rows k+1..2k (MultiXact of C's lock and A's update)
//	D: FOR KEY SHARE rows k+1..2k (follows A's update chain)
//	commit D, C, B, A; then an update of rows 1..k by another transaction.
func stepRowLocks(ctx context.Context, w *runner) error {
	k := w.n(100)
	var conns [4]*pgx.Conn
	for i := range conns {
		c, err := w.connect(ctx, "")
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	a, bb, c, d := conns[0], conns[1], conns[2], conns[3]
	seq := []struct {
		conn *pgx.Conn
		sql  string
	}{
		{a, `BEGIN`},
		{a, fmt.Sprintf(`SELECT id FROM wl_heap WHERE id BETWEEN 1 AND %d FOR KEY SHARE`, 2*k)},
		{bb, `BEGIN`},
		{bb, fmt.Sprintf(`SELECT id FROM wl_heap WHERE id BETWEEN 1 AND %d FOR SHARE`, k)},
		{c, `BEGIN`},
		{c, fmt.Sprintf(`SELECT id FROM wl_heap WHERE id BETWEEN %d AND %d FOR KEY SHARE`, k+1, 2*k)},
		{a, fmt.Sprintf(`UPDATE wl_heap SET note = 'locked by A' WHERE id BETWEEN %d AND %d`, k+1, 2*k)},
		{d, `BEGIN`},
		{d, fmt.Sprintf(`SELECT id FROM wl_heap WHERE id BETWEEN %d AND %d FOR KEY SHARE`, k+1, 2*k)},
		{d, `COMMIT`},
		{c, `COMMIT`},
		{bb, `COMMIT`},
		{a, `COMMIT`},
		{w.conn, fmt.Sprintf(`UPDATE wl_heap SET grp = grp + 1 WHERE id BETWEEN 1 AND %d`, k)},
	}
	for _, s := range seq {
		if err := execOn(ctx, s.conn, s.sql); err != nil {
			return err
		}
	}
	return nil
}

func stepVacuum(ctx context.Context, w *runner) error {
	return w.exec(ctx, `VACUUM wl_heap`, `VACUUM wl_toast`)
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randAlnum is n random letters and digits.
func randAlnum(rnd *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rnd.IntN(len(letters))]
	}
	return string(b)
}

// randWord is a random lower-case word of min to max letters.
func randWord(rnd *rand.Rand, min, max int) string {
	b := make([]byte, min+rnd.IntN(max-min+1))
	for i := range b {
		b[i] = letters[rnd.IntN(26)]
	}
	return string(b)
}

// vocabulary makes text that compresses.
var vocabulary = []string{
	"page", "server", "safekeeper", "timeline", "branch", "tenant", "layer",
	"record", "image", "delta", "checkpoint", "redo", "compute", "replica",
	"segment", "relation", "block", "fork", "visibility", "multixact",
}
