#!/bin/bash
# diverge_bench.sh: `smelt diverge` throughput against reading the inputs
# once, the cache-hit time, and the re-scoring time on a 7B-shaped tensor
# list. Results go to stdout; bench/widen.md records them.
#
# usage: bench/diverge_bench.sh [SMELT_BIN] [BUILD_DIR]
#   FAMILY=/path  folder for the synthetic family (default /tmp/smelt-bench-family;
#                 made with ../shared/bench/make_family.py when missing:
#                 hidden 1024, 16 layers, MLP 2816, vocab 32000, bf16, base + 2 models,
#                 about 540 MB per model)
#   THREADS=N     reader threads (default: all CPUs)
set -eu

bin=${1:-build/smelt}
build=${2:-build}
family=${FAMILY:-/tmp/smelt-bench-family}
shared=${SMELT_SHARED:-$(cd "$(dirname "$0")/.." && pwd)/../shared}
threads=${THREADS:-0}

. "$(dirname "$0")/lib.sh"
ensure_family "$family" "$shared"
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

evict() { # drop the inputs from the page cache (only these files; no root needed)
	python3 -c 'import os,sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' $files
}
cold() { # command...: seconds for one run on a cold page cache
	evict
	local t0 t1
	t0=$(now)
	"$@" >/dev/null
	t1=$(now)
	echo "$t1 - $t0" | bc -l
}
gbs() { echo "$bytes / $1 / 1000000000" | bc -l; }
run_diverge() { "$bin" diverge --base "$family/base" "$family/m1" "$family/m2" --threads "$threads" --json --quiet "$@"; }

cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
printf 'inputs: %s bytes (3 x bf16 checkpoints), %d CPUs, load average %s\n' "$bytes" "$(nproc)" \
	"$(cut -d' ' -f1 /proc/loadavg)"

# cold page cache: both read from the disk
cold_read=$(cold cat $files)
cold_div=$(cold run_diverge --no-cache)
printf 'cold  read once (cat):            %.3f s  (%.2f GB/s)\n' "$cold_read" "$(gbs "$cold_read")"
printf 'cold  smelt diverge (no cache):   %.3f s  (%.2f GB/s)  ratio %.2f\n' "$cold_div" \
	"$(gbs "$cold_div")" "$(echo "$cold_div / $cold_read" | bc -l)"

# warm page cache: reading is a memory copy, the analysis is compute-bound
cat $files >/dev/null
read_s=$(best_of 3 cat $files)
diverge_s=$(best_of 3 run_diverge --no-cache)
run_diverge --cache-dir "$cache" >/dev/null
hit_s=$(best_of 3 run_diverge --cache-dir "$cache")
printf 'warm  read once (cat):            %.3f s  (%.2f GB/s)\n' "$read_s" "$(gbs "$read_s")"
printf 'warm  smelt diverge (no cache):   %.3f s  (%.2f GB/s)  ratio %.2f\n' "$diverge_s" \
	"$(gbs "$diverge_s")" "$(echo "$diverge_s / $read_s" | bc -l)"
printf 'smelt diverge (cache hit):        %.3f s\n' "$hit_s"

# what reading once costs a Python user: every tensor to f32 with numpy
np_read() {
	"${PYTHON:-/usr/bin/python3}" -c 'import json, mmap, struct, sys
import numpy as np
tot = 0.0
for p in sys.argv[1:]:
    f = open(p, "rb"); mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = struct.unpack("<Q", mm[:8])[0]; hdr = json.loads(mm[8:8 + n]); hdr.pop("__metadata__", None)
    for e in hdr.values():
        a, b = e["data_offsets"]
        u = np.frombuffer(mm, np.uint16, (b - a) // 2, 8 + n + a)
        tot += float((u.astype(np.uint32) << 16).view(np.float32).sum())
print(tot)' $files
}
np_s=$(best_of 2 np_read)
printf 'warm  read once (numpy -> f32):   %.3f s  (%.2f GB/s)  diverge ratio %.2f\n' "$np_s" \
	"$(gbs "$np_s")" "$(echo "$diverge_s / $np_s" | bc -l)"
if [ -x "$build/tests/test_stats" ]; then
	SMELT_BENCH_RESCORE=1 SMELT_SHARED=$shared "$build/tests/test_stats" | grep 're-score'
fi
