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

# Write the bench family (../shared/bench/make_family.py, its defaults) into
# FAMILY unless it is there already.
ensure_family() { # FAMILY SHARED
	[ -f "$1/m2/model.safetensors" ] && return 0
	echo "writing the bench family into $1" >&2
	/usr/bin/python3 "$2/bench/make_family.py" "$1" >/dev/null
}

best() { printf '%s\n' "$@" | sort -g | head -n 1; }

# best_measure N PREP OUT_PATH COMMAND...: "<best seconds> <peak RssAnon kB>".
# Times N runs of COMMAND, left alone, and takes the best; peak RssAnon comes
# from one more run sampled by `measure` (the sampler's own processes would
# share the CPUs with a timed run). PREP (a command, e.g. one that warms the
# page cache) runs before every run, then dirty data is flushed; OUT_PATH,
# what COMMAND writes, is removed after every run.
best_measure() {
	local n=$1 prep=$2 out=$3 t m ts=() tf
	shift 3
	tf=$(mktemp)
	for _ in $(seq "$n"); do
		$prep; sync
		/usr/bin/time -f %e -o "$tf" "$@" >/dev/null 2>&1 ||
			{ echo "bench: command failed: $*" >&2; rm -f "$tf"; return 1; }
		t=$(tail -n 1 "$tf")
		rm -rf "$out"
		ts+=("$t")
	done
	rm -f "$tf"
	$prep; sync
	read -r _ m < <(measure "$@")
	rm -rf "$out"
	echo "$(best "${ts[@]}") $m"
}
