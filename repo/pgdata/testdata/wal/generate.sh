#!/bin/bash
# Regenerates the WAL samples in this directory from a real PostgreSQL 15,
# with pg_waldump's output next to each as the golden truth the decoder
# tests compare against. Run as root (PostgreSQL runs as the postgres
# user) from anywhere:  repo/pgdata/testdata/wal/generate.sh
#
# Cases (one directory each; "start" holds the --start LSN if any):
#   off pglz lz4 zstd  one 16 MiB segment written with that wal_compression:
#                      full-page images of heap, btree and hash pages, a
#                      sequence, two-phase commit, a 12 kB logical message
#                      spanning pages; trimmed just past the last used page.
#   span               1 MiB segments: a 100 kB record that spans from one
#                      segment into the next, an XLOG_SWITCH, and records in
#                      the segment after it. The first segment's pages before
#                      the start are zeroed (only its long header is read).
# The tests derive more cases from these: reading from a record in mid-page,
# from inside a record, from a segment that begins with the rest of one.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
OUT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/zenith-walgen.XXXXXX)
chmod 0755 "$WORK"
chown postgres: "$WORK"
PIDS=()
cleanup() {
	for d in "$WORK"/data*; do
		[ -f "$d/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

as_pg() { runuser -u postgres -- "$@"; }

# start_cluster NAME WALSEGSIZE_MB: initdb and start, listening on a unix
# socket in $WORK only.
start_cluster() {
	local d="$WORK/data-$1"
	as_pg "$PGBIN/initdb" -D "$d" -A trust -U postgres --wal-segsize="$2" >/dev/null
	cat >>"$d/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$WORK'
max_prepared_transactions = 5
wal_level = replica
full_page_writes = on
autovacuum = off
max_wal_size = 1GB
CONF
	as_pg "$PGBIN/pg_ctl" -D "$d" -l "$d/log" -w start >/dev/null
}
stop_cluster() { as_pg "$PGBIN/pg_ctl" -D "$WORK/data-$1" -m fast -w stop >/dev/null; }

sql() { as_pg psql -X -q -At -h "$WORK" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$1"; }

# walfile LSN: the segment file name holding LSN.
walfile() { sql "SELECT pg_walfile_name('$1')"; }
# segoff LSN SEGBYTES: LSN's offset in its segment.
segoff() { sql "SELECT ('$1'::pg_lsn - '0/0'::pg_lsn)::numeric % $2"; }
# wait_flushed LSN: until the WAL up to LSN is on disk.
wait_flushed() { until [ "$(sql "SELECT pg_current_wal_flush_lsn() >= '$1'")" = t ]; do sleep 0.1; done; }

# golden CASE: pg_waldump over the case's files, from its start if any.
golden() {
	local c="$OUT/$1"
	local files=("$c"/0*)
	local args=()
	if [ -f "$c/start" ]; then
		args=(-p "$c" --start "$(cat "$c/start")")
	else
		args=("${files[0]}")
		[ ${#files[@]} -gt 1 ] && args+=("${files[-1]}")
	fi
	"$PGBIN/pg_waldump" "${args[@]}" >"$c/pg_waldump.txt" 2>"$c/pg_waldump.err" || true
	# Logical messages' payloads are printed in hex: keep only their size.
	sed -i -e "s|$OUT/||g" -e 's/\(payload ([0-9]* bytes):\)\( [0-9A-Fa-f][0-9A-Fa-f]\)*/\1 .../' "$c/pg_waldump.txt" "$c/pg_waldump.err"
}

# copy_trimmed SRCFILE DEST ENDOFFSET: copy a segment file cut at the end
# of the page holding ENDOFFSET.
copy_trimmed() {
	local size=$(( ($3 / 8192 + 1) * 8192 ))
	head -c "$size" "$1" >"$2"
}

rm -rf "$OUT"/off "$OUT"/pglz "$OUT"/lz4 "$OUT"/zstd "$OUT"/span

# --- one segment per wal_compression method ---------------------------
start_cluster comp 16
D="$WORK/data-comp"
for m in off pglz lz4 zstd; do
	sql "CREATE TABLE t_$m (id int PRIMARY KEY, v text, n int)"
	sql "CREATE INDEX t_${m}_hash ON t_$m USING hash (n)"
	sql "CREATE SEQUENCE s_$m"
done
sql "CHECKPOINT"
for m in off pglz lz4 zstd; do
	sql "ALTER SYSTEM SET wal_compression = '$m'"
	sql "SELECT pg_reload_conf()" >/dev/null
	sql "SELECT pg_switch_wal()" >/dev/null
	sql "SELECT pg_sleep(0.2)" >/dev/null
	start=$(sql "SELECT pg_current_wal_insert_lsn()")
	sql "INSERT INTO t_$m SELECT g, repeat('v', 40) || g, g FROM generate_series(1, 60) g"
	sql "CHECKPOINT"
	sql "UPDATE t_$m SET n = n + 1000 WHERE id % 7 = 0"
	sql "DELETE FROM t_$m WHERE id > 50"
	sql "VACUUM t_$m"
	sql "SELECT nextval('s_$m') FROM generate_series(1, 40)" >/dev/null
	sql "BEGIN; INSERT INTO t_$m VALUES (1001, 'prepared', 1); PREPARE TRANSACTION 'p_$m'"
	sql "COMMIT PREPARED 'p_$m'"
	sql "SELECT pg_logical_emit_message(false, 'zenith', repeat('m', 12000))" >/dev/null
	end=$(sql "SELECT pg_current_wal_insert_lsn()")
	wait_flushed "$end"
	f=$(walfile "$start")
	mkdir -p "$OUT/$m"
	copy_trimmed "$D/pg_wal/$f" "$OUT/$m/$f" "$(segoff "$end" $((16 << 20)))"
	golden "$m"
done
stop_cluster comp

# --- records spanning segments, and XLOG_SWITCH ---------------------------
SEG=$((1 << 20))
start_cluster span 1
D="$WORK/data-span"
sql "CREATE TABLE fill (id int, v text)"
sql "SELECT pg_switch_wal()" >/dev/null
# Fill the segment up to 40 kB before its end.
while [ "$(segoff "$(sql "SELECT pg_current_wal_insert_lsn()")" $SEG)" -lt $((SEG - 40000)) ]; do
	sql "INSERT INTO fill SELECT g, repeat('f', 100) FROM generate_series(1, 200) g"
done
sql "INSERT INTO fill VALUES (0, 'before the start')"
start=$(sql "SELECT pg_current_wal_insert_lsn()")
sql "INSERT INTO fill VALUES (1, 'at the start')"
sql "SELECT pg_logical_emit_message(false, 'zenith', repeat('s', 100000))" >/dev/null
sql "INSERT INTO fill VALUES (2, 'after the big record')"
sql "SELECT pg_switch_wal()" >/dev/null
sql "INSERT INTO fill VALUES (3, 'after the switch')"
sql "SELECT pg_logical_emit_message(false, 'zenith', repeat('t', 10000))" >/dev/null
end=$(sql "SELECT pg_current_wal_insert_lsn()")
wait_flushed "$end"
f1=$(walfile "$start")
f3=$(walfile "$end")
f2=$(printf '%s%08X' "${f1:0:16}" $(( 0x${f1:16:8} + 1 )))
mkdir -p "$OUT/span"
# The first segment: only its long header and the pages from the start on
# are read; zero the rest so the sample stays small.
startpage=$(( $(segoff "$start" $SEG) / 8192 ))
cp "$D/pg_wal/$f1" "$OUT/span/$f1"
dd if=/dev/zero of="$OUT/span/$f1" bs=8192 seek=1 count=$((startpage - 1)) conv=notrunc status=none
cp "$D/pg_wal/$f2" "$OUT/span/$f2"
copy_trimmed "$D/pg_wal/$f3" "$OUT/span/$f3" "$(segoff "$end" $SEG)"
echo "$start" >"$OUT/span/start"
stop_cluster span
golden span
echo "samples written to $OUT"
