package workload

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"
)

// insertUnnest inserts rows given as parallel arrays, one heap_insert (and
// one insert per index) per row, in one statement.
func insertUnnest(ctx context.Context, conn *pgx.Conn, table, types string, cols ...any) error {
	sql := fmt.Sprintf(`INSERT INTO %s SELECT * FROM unnest(%s)`, table, types)
	if _, err := conn.Exec(ctx, sql, cols...); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

func stepHash(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE TABLE wl_hash (id int, h int)`,
		`CREATE INDEX wl_hash_h ON wl_hash USING hash (h)`,
	); err != nil {
		return err
	}
	// 40% of the rows share one key, so its bucket needs overflow pages.
	var ids, hs []int32
	for i := 1; i <= w.n(8000); i++ {
		h := int32(w.rnd.IntN(400))
		if w.rnd.IntN(10) < 4 {
			h = 0
		}
		ids, hs = append(ids, int32(i)), append(hs, h)
	}
	if err := insertUnnest(ctx, w.conn, "wl_hash", "$1::int[], $2::int[]", ids, hs); err != nil {
		return err
	}
	return w.exec(ctx, `DELETE FROM wl_hash WHERE h = 0 OR id % 3 = 0`, `VACUUM wl_hash`)
}

func stepGin(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE TABLE wl_gin (id int, tags int[])`,
		`CREATE INDEX wl_gin_fast ON wl_gin USING gin (tags) WITH (fastupdate = on)`,
		`CREATE INDEX wl_gin_direct ON wl_gin USING gin (tags) WITH (fastupdate = off)`,
	); err != nil {
		return err
	}
	// Tag 1 is in 90% of the rows: its posting list outgrows
	// GinMaxItemSize and becomes a posting tree.
	b := &pgx.Batch{}
	for i := 1; i <= w.n(6000); i++ {
		tags := []int32{}
		if w.rnd.IntN(10) < 9 {
			tags = append(tags, 1)
		}
		for j := 2 + w.rnd.IntN(10); j > 0; j-- {
			tags = append(tags, int32(2+w.rnd.IntN(500)))
		}
		b.Queue(`INSERT INTO wl_gin VALUES ($1, $2)`, i, tags)
	}
	if err := sendBatch(ctx, w.conn, b); err != nil {
		return err
	}
	return w.exec(ctx,
		`SELECT gin_clean_pending_list('wl_gin_fast')`,
		`DELETE FROM wl_gin WHERE id % 2 = 0`,
		`VACUUM wl_gin`,
	)
}

func stepGist(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE TABLE wl_gist (id int, p point)`,
		`CREATE INDEX wl_gist_p ON wl_gist USING gist (p)`,
	); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for i := 1; i <= w.n(5000); i++ {
		b.Queue(`INSERT INTO wl_gist VALUES ($1, point($2, $3))`, i, w.rnd.Float64()*1000, w.rnd.Float64()*1000)
	}
	if err := sendBatch(ctx, w.conn, b); err != nil {
		return err
	}
	// Empty a quarter of the space, so whole leaf pages become empty and
	// VACUUM deletes them; then a sorted build of a second index.
	return w.exec(ctx,
		`DELETE FROM wl_gist WHERE p <@ box '((0,0),(500,500))'`,
		`VACUUM wl_gist`,
		`CREATE INDEX wl_gist_p_sorted ON wl_gist USING gist (p)`,
	)
}

func stepSPGist(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE TABLE wl_spgist (id int, t text, p point)`,
		`CREATE INDEX wl_spgist_t ON wl_spgist USING spgist (t)`,
		`CREATE INDEX wl_spgist_p ON wl_spgist USING spgist (p)`,
	); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for i := 1; i <= w.n(5000); i++ {
		b.Queue(`INSERT INTO wl_spgist VALUES ($1, $2, point($3, $4))`, i, spgistWord(w.rnd),
			w.rnd.Float64()*1000, w.rnd.Float64()*1000)
	}
	if err := sendBatch(ctx, w.conn, b); err != nil {
		return err
	}
	return w.exec(ctx, `DELETE FROM wl_spgist WHERE id % 2 = 0`, `VACUUM wl_spgist`)
}

// spgistWord is a word with a common prefix now and then, so the radix
// tree gets prefix splits as well as new nodes.
func spgistWord(rnd *rand.Rand) string {
	prefixes := []string{"", "", "zen", "zenith", "post", "postgres", "page"}
	return prefixes[rnd.IntN(len(prefixes))] + randWord(rnd, 1, 10)
}

func stepBRIN(ctx context.Context, w *runner) error {
	if err := w.exec(ctx,
		`CREATE TABLE wl_brin (id int, v int)`,
		`CREATE INDEX wl_brin_id ON wl_brin USING brin (id) WITH (pages_per_range = 2)`,
	); err != nil {
		return err
	}
	rows := w.n(5000)
	var ids, vs []int32
	for i := 1; i <= rows; i++ {
		ids, vs = append(ids, int32(i)), append(vs, w.rnd.Int32())
	}
	if err := insertUnnest(ctx, w.conn, "wl_brin", "$1::int[], $2::int[]", ids, vs); err != nil {
		return err
	}
	// Summarize; free space in the summarized ranges; fill it with ids
	// outside their summaries, which widens them in place.
	if err := w.exec(ctx,
		`SELECT brin_summarize_new_values('wl_brin_id')`,
		`DELETE FROM wl_brin WHERE id % 4 = 0`,
		`VACUUM wl_brin`,
	); err != nil {
		return err
	}
	ids, vs = nil, nil
	for i := 1; i <= rows/8; i++ {
		ids, vs = append(ids, int32(10*rows+i)), append(vs, w.rnd.Int32())
	}
	if err := insertUnnest(ctx, w.conn, "wl_brin", "$1::int[], $2::int[]", ids, vs); err != nil {
		return err
	}
	return w.exec(ctx,
		`SELECT brin_desummarize_range('wl_brin_id', 0)`,
		`SELECT brin_summarize_range('wl_brin_id', 0)`,
	)
}
