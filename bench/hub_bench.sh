#!/usr/bin/env bash
# Download throughput of `smelt pull` against `curl -o`, same file, same
# local nginx, same run. A SIZE_MB file (default 1024) is generated in a
# temporary folder, served by nginx on 127.0.0.1 through the Hub-style
# resolve -> CDN redirect, and fetched ROUNDS times (default 3) by each of:
#   curl -o FILE                      (the CDN URL directly)
#   smelt pull --connections 1        (fresh cache each time)
#   smelt pull --connections 8
# in interleaved order. smelt's time is the whole pull: API call, HEAD,
# transfer, SHA-256 verification, move into blobs/ and snapshot link.
# Prints a markdown table (median MB/s per tool) and smelt/curl ratios.
#
#   SMELT_BIN=build/smelt bash bench/hub_bench.sh
#   BENCH_DIR=/dev/shm ... puts the file, the cache and curl's copy in RAM
#   (takes 3x SIZE_MB of memory) to see the CPU cost without the disk.
set -eu
SMELT_SOURCE=${SMELT_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
SMELT_BIN=${SMELT_BIN:-$SMELT_SOURCE/build/smelt}
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
[ -x "$SMELT_BIN" ] || { echo "no smelt binary at $SMELT_BIN (make build)" >&2; exit 1; }
WORK=$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")
. "$SMELT_SOURCE/tests/hub/lib.sh"
trap 'stop_nginx; rm -rf "$WORK"' EXIT

echo "generating a $SIZE_MB MiB file and the nginx config..." >&2
start_nginx "$SIZE_MB"
export HF_ENDPOINT="$HUB_URL" HF_HOME="$WORK/hfhome"
unset HF_TOKEN HF_HUB_OFFLINE || true
ETAG=$(manifest "[e['etag'] for e in m['repos']['smelt-test/big']['commits'].popitem()[1].values() if e['lfs']][0]")
BYTES=$((SIZE_MB << 20))
# Warm the page cache so every tool reads the source from memory.
cat "$FX/www/cdn/$ETAG" >/dev/null

secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$@"; }
run_curl() {
	local t0 t1
	t0=$(date +%s.%N)
	curl -s -o "$WORK/curl.out" "$CDN_URL/cdn/$ETAG"
	t1=$(date +%s.%N)
	[ "$(stat -c %s "$WORK/curl.out")" = "$BYTES" ] || { echo "curl got a short file" >&2; exit 1; }
	rm -f "$WORK/curl.out"
	secs "$t0" "$t1"
}
run_smelt() { # CONNECTIONS
	local t0 t1 snap
	rm -rf "$WORK/cache"
	t0=$(date +%s.%N)
	snap=$("$SMELT_BIN" pull smelt-test/big --include model.safetensors --cache-dir "$WORK/cache" \
		--connections "$1" --quiet | tail -n 1)
	t1=$(date +%s.%N)
	[ "$(stat -L -c %s "$snap/model.safetensors")" = "$BYTES" ] || { echo "smelt got a short file" >&2; exit 1; }
	secs "$t0" "$t1"
}

declare -a T_CURL T_S1 T_S8
for r in $(seq 1 "$ROUNDS"); do
	T_CURL+=("$(run_curl)")
	T_S1+=("$(run_smelt 1)")
	T_S8+=("$(run_smelt 8)")
	echo "round $r: curl ${T_CURL[-1]}s, smelt x1 ${T_S1[-1]}s, smelt x8 ${T_S8[-1]}s" >&2
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mbs() { python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]) / 1e6:.0f}')" "$BYTES" "$1"; }
mc=$(median "${T_CURL[@]}"); m1=$(median "${T_S1[@]}"); m8=$(median "${T_S8[@]}")
echo
echo "| tool ($SIZE_MB MiB, median of $ROUNDS) | seconds | MB/s | vs curl |"
echo "| --- | --- | --- | --- |"
echo "| curl -o | $mc | $(mbs "$mc") | 100% |"
echo "| smelt pull --connections 1 | $m1 | $(mbs "$m1") | $(python3 -c "print(f'{100*$mc/$m1:.0f}%')") |"
echo "| smelt pull --connections 8 | $m8 | $(mbs "$m8") | $(python3 -c "print(f'{100*$mc/$m8:.0f}%')") |"
