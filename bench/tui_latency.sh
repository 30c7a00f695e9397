#!/usr/bin/env bash
# tui_latency.sh: keypress-to-screen latency of the workbench while a merge
# runs. Starts `smelt tui` in tmux on a synthetic base/ft/pt family, starts
# a WIDEN merge on one thread, then N times: send `?` with tmux send-keys,
# poll capture-pane until the help overlay is on screen, record the time,
# close it. Prints every sample, the median and the 95th percentile.
#
#   bench/tui_latency.sh [SMELT_BIN] [SAMPLES]
#
# The figure includes tmux's own delivery and one capture-pane round trip
# (a few ms), so it is an upper bound of what a user sees.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
SMELT_BIN=${1:-${SMELT_BIN:-$here/../build/smelt}}
samples=${2:-40}
export TUI_POLL=${TUI_POLL:-0.005}
. "$here/../tests/tui_lib.bash"

tmp=$(mktemp -d)
trap 'tui_cleanup; rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache" HF_HUB_CACHE="$tmp/hf"
TUI_BIG_LAYERS=${TUI_BIG_LAYERS:-48} tui_big_family "$tmp/big"

tui_start 140 45 "cd '$tmp' && TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/out' '$tmp/big/base' '$tmp/big/ft' '$tmp/big/pt'"
tui_wait "magnitude divergence" 60 >/dev/null
# Let the divergence analysis finish first: this measures the merge alone.
tui_wait_gone "computing" 300 >/dev/null
tui_keys 4 j j j +
tui_wait "press r to merge" 120 >/dev/null
tui_keys r
tui_wait "c cancels" 30 >/dev/null

lat=()
for i in $(seq 1 "$samples"); do
	tui_screen | grep -qF "c cancels" || break
	t0=$(date +%s%N)
	tui_keys '?'
	tui_wait "Keys (any key closes)" 5 >/dev/null || break
	t1=$(date +%s%N)
	lat+=($(((t1 - t0) / 1000000)))
	tui_keys x
	tui_wait_gone "Keys (any key closes)" 5 >/dev/null || break
done
running=no
tui_screen | grep -qF "c cancels" && running=yes
tui_keys q y
if [ ${#lat[@]} -eq 0 ]; then
	echo "no samples: the merge ended before measuring" >&2
	exit 1
fi
printf '%s\n' "${lat[@]}" | sort -n | awk -v running="$running" '
	{ a[NR] = $1 }
	END {
		med = a[int((NR + 1) / 2)]
		p95 = a[int(NR * 0.95 + 0.999)]
		printf "samples %d  median %d ms  p95 %d ms  max %d ms  (merge still running at the end: %s)\n",
		       NR, med, p95, a[NR], running
	}'
