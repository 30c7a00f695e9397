# bench/lib.sh: shared helpers for the benchmark scripts (sourced).

# Run a command, print "<seconds> <peak RssAnon kB>" for it on stdout.
# Its own output goes to $BENCH_LOG (default /dev/null).
measure() {
	local log=${BENCH_LOG:-/dev/null} start end pid peak=0 kb
	start=$(date +%s.%N)
	"$@" >>"$log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
		[ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
		sleep 0.02
	done
	wait "$pid" || { echo "bench: command failed: $*" >&2; return 1; }
	end=$(date +%s.%N)
	echo "$(echo "$end - $start" | bc -l) $peak"
}

# Seconds (wall) of a command, no memory sampling.
seconds() {
	local start end
	start=$(date +%s.%N)
	"$@"
	end=$(date +%s.%N)
	echo "$end - $start" | bc -l
}

ratio() { echo "scale=2; $1 / $2" | bc -l; }
