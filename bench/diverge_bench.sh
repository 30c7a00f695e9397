#!/bin/bash
# diverge_bench.sh: `smelt diverge` throughput against reading the inputs
# once, the cache-hit time, and the re-scoring time on a 7B-shaped tensor
# list. Results go to stdout; bench/widen.md records them.
#
# usage: bench/diverge_bench.sh [SMELT_BIN] [BUILD_DIR]
#   FAMILY=/path  folder for the synthetic family (default /tmp/smelt-bench-family;
#                 made with /work/shared/bench/make_family.py when missing:
#                 hidden 1024, 16 layers, MLP 2816, vocab 32000, bf16, base + 2 models,
#                 about 540 MB per model)
#   THREADS=N     reader threads (default: all CPUs)
set -eu

bin=${1:-build/smelt}
build=${2:-build}
family=${FAMILY:-/tmp/smelt-bench-family}
shared=${SMELT_SHARED:-/work/shared}
threads=${THREADS:-0}

if [ ! -f "$family/m2/model.safetensors" ]; then
	echo "# writing the synthetic family to $family"
	"${PYTHON:-/usr/bin/python3}" "$shared/bench/make_family.py" "$family" >/dev/null
fi
files="$family/base/model.safetensors $family/m1/model.safetensors $family/m2/model.safetensors"
bytes=$(cat $files | wc -c)

now() { date +%s.%N; }
best_of() { # N command...: the fastest of N runs, in seconds
	local n=$1 best=
	shift
	for _ in $(seq "$n"); do
		local t0 t1 dt
		t0=$(now)
		"$@" >/dev/null
		t1=$(now)
		dt=$(echo "$t1 - $t0" | bc -l)
		if [ -z "$best" ] || [ "$(echo "$dt < $best" | bc -l)" = 1 ]; then best=$dt; fi
	done
	echo "$best"
}

# warm the page cache, then time one plain read of every input
cat $files >/dev/null
read_s=$(best_of 3 cat $files)
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
diverge_s=$(best_of 3 "$bin" diverge --base "$family/base" "$family/m1" "$family/m2" \
	--threads "$threads" --json --quiet --no-cache)
"$bin" diverge --base "$family/base" "$family/m1" "$family/m2" --threads "$threads" --json \
	--quiet --cache-dir "$cache" >/dev/null
hit_s=$(best_of 3 "$bin" diverge --base "$family/base" "$family/m1" "$family/m2" --json \
	--quiet --cache-dir "$cache")
printf 'inputs: %s bytes (3 x bf16 checkpoints), %d CPUs\n' "$bytes" "$(nproc)"
printf 'read once (cat, page cache warm): %.3f s  (%.2f GB/s)\n' "$read_s" \
	"$(echo "$bytes / $read_s / 1e9" | bc -l)"
printf 'smelt diverge (no cache):         %.3f s  (%.2f GB/s)  ratio %.2f\n' "$diverge_s" \
	"$(echo "$bytes / $diverge_s / 1e9" | bc -l)" "$(echo "$diverge_s / $read_s" | bc -l)"
printf 'smelt diverge (cache hit):        %.3f s\n' "$hit_s"
if [ -x "$build/tests/test_stats" ]; then
	SMELT_BENCH_RESCORE=1 SMELT_SHARED=$shared "$build/tests/test_stats" | grep 're-score'
fi
