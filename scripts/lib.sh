# Shell helpers sourced by scripts/bench, scripts/bench-ephemeral,
# scripts/bench-memory and scripts/soak.

# free_ports N: the first of N consecutive ports on 127.0.0.1 that nothing
# listens on, below the kernel's ephemeral range (32768 and up by default),
# which outgoing connections take their ports from (see repo/netport).
free_ports() {
	local n=$1 base p ok
	for _ in $(seq 100); do
		base=$((10000 + RANDOM % 22000)) ok=1
		for ((p = base; p < base + n; p++)); do
			if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then ok=0; break; fi
		done
		if [ "$ok" = 1 ]; then echo "$base"; return; fi
	done
	echo "no $n free consecutive ports" >&2
	exit 1
}

# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# since T0: seconds since T0, to the millisecond.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# proc_field STATUS NAME FIELD: FIELD of process NAME ("page server",
# "safekeeper 2") in a zenith status --json, or nothing.
proc_field() {
	awk -v name="$2" -v field="$3" '
		/"name": / { cur = $0; sub(/.*"name": "/, "", cur); sub(/".*/, "", cur) }
		cur == name && $0 ~ "\"" field "\": " { v = $0; sub(/.*": /, "", v); sub(/,$/, "", v); print v; exit }
	' <<<"$1"
}

# mib BYTES: whole MiB, or - for nothing.
mib() { if [ -n "$1" ]; then echo $(($1 / 1048576)); else echo -; fi; }

# proc_ticks: one line per process, "PID PPID TICKS", where TICKS is the
# CPU the process used (user + system) plus that of its children it has
# reaped, in clock ticks (getconf CLK_TCK), from /proc/PID/stat.
proc_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk '{
		rest = substr($0, match($0, /\) [A-Za-z] /) + 2)
		split(rest, f, " ")
		# f[1] state, f[2] ppid, f[12..15] utime stime cutime cstime
		print $1, f[2], f[12] + f[13] + f[14] + f[15]
	}'
}

# tree_ticks ROOT [EXCLUDED...]: the CPU ticks of ROOT and its live
# descendants (and through them, of the reaped ones), leaving out the
# processes EXCLUDED name (and their descendants).
tree_ticks() {
	local root=$1
	shift
	proc_ticks | awk -v root="$root" -v excl="$*" '
		BEGIN { n = split(excl, e, " "); for (i = 1; i <= n; i++) skip[e[i]] = 1 }
		{ parent[$1] = $2; ticks[$1] = $3 }
		END {
			for (p in ticks) {
				if (p in skip) continue
				q = p
				while (q != "" && q != root && q > 1 && !(q in skip)) q = parent[q]
				if (q == root) sum += ticks[p]
			}
			print sum + 0
		}'
}

# walsenders PID: the walsender processes among postmaster PID's children.
walsenders() {
	local p
	for p in $(pgrep -P "$1"); do
		case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in "postgres: walsender"*) echo "$p" ;; esac
	done
}
