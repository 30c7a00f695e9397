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

# Each run prints "wall user+sys" seconds (bash's time builtin, children included).
TIMEFORMAT='%R %U %S'
timed() { # CMD...: runs it, prints "wall cpu"
	local t
	t=$({ time "$@" >/dev/null 2>"$WORK/err"; } 2>&1) || { cat "$WORK/err" >&2; exit 1; }
	awk '{printf "%.3f %.3f\n", $1, $2 + $3}' <<<"$t"
}
run_curl() {
	timed curl -s -o "$WORK/curl.out" "$CDN_URL/cdn/$ETAG"
	[ "$(stat -c %s "$WORK/curl.out")" = "$BYTES" ] || { echo "curl got a short file" >&2; exit 1; }
	rm -f "$WORK/curl.out"
}
run_smelt() { # CONNECTIONS
	rm -rf "$WORK/cache"
	timed "$SMELT_BIN" pull smelt-test/big --include model.safetensors --cache-dir "$WORK/cache" \
		--connections "$1" --quiet
	local snap=("$WORK"/cache/models--smelt-test--big/snapshots/*)
	local got
	got=$(stat -L -c %s "${snap[0]}/model.safetensors" 2>/dev/null || echo none)
	[ "$got" = "$BYTES" ] || { echo "smelt got $got bytes, not $BYTES:" >&2; cat "$WORK/err" >&2; exit 1; }
}

declare -a W_CURL W_S1 W_S8 C_CURL C_S1 C_S8
for r in $(seq 1 "$ROUNDS"); do
	run_curl >"$WORK/t"; read -r w c <"$WORK/t"; W_CURL+=("$w"); C_CURL+=("$c")
	run_smelt 1 >"$WORK/t"; read -r w c <"$WORK/t"; W_S1+=("$w"); C_S1+=("$c")
	run_smelt 8 >"$WORK/t"; read -r w c <"$WORK/t"; W_S8+=("$w"); C_S8+=("$c")
	echo "round $r: curl ${W_CURL[-1]}s, smelt x1 ${W_S1[-1]}s, smelt x8 ${W_S8[-1]}s (wall)" >&2
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mbs() { python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]) / 1e6:.0f}')" "$BYTES" "$1"; }
pct() { python3 -c "import sys; print(f'{100 * float(sys.argv[1]) / float(sys.argv[2]):.0f}%')" "$1" "$2"; }
mc=$(median "${W_CURL[@]}"); m1=$(median "${W_S1[@]}"); m8=$(median "${W_S8[@]}")
cc=$(median "${C_CURL[@]}"); c1=$(median "${C_S1[@]}"); c8=$(median "${C_S8[@]}")
echo
echo "| $SIZE_MB MiB, median of $ROUNDS | wall s | MB/s | throughput vs curl | CPU s (user+sys) |"
echo "| --- | --- | --- | --- | --- |"
echo "| curl -o | $mc | $(mbs "$mc") | 100% | $cc |"
echo "| smelt pull --connections 1 | $m1 | $(mbs "$m1") | $(pct "$mc" "$m1") | $c1 |"
echo "| smelt pull --connections 8 | $m8 | $(mbs "$m8") | $(pct "$mc" "$m8") | $c8 |"
read -r hw hc < <(timed openssl dgst -sha256 "$FX/www/cdn/$ETAG")
echo "| (SHA-256 of the file alone: openssl dgst) | $hw | $(mbs "$hw") | | $hc |"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
