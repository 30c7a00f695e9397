#!/usr/bin/env bash
# t_tui_merge.sh: a merge long enough to interact with: keypresses reach the
# screen within 100 ms while it runs, the screen survives resizes
# mid-merge, cancel (confirmed) leaves nothing partial, quitting during a
# merge asks, cancels and restores the terminal.
set -eu
. "$(dirname "$0")/tui_lib.bash"
tui_require_methods

tmp=$(mktemp -d)
trap 'tui_cleanup; rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache" HF_HUB_CACHE="$tmp/hf"
# Enough data that one thread merges for seconds: more layers when the
# binary is an optimised build (about 4x faster than ASan's).
layers=8
if [ -n "${SMELT_BUILD:-}" ] && grep -q 'CMAKE_BUILD_TYPE:STRING=Release' "$SMELT_BUILD/CMakeCache.txt" 2>/dev/null; then
	layers=32
fi
TUI_BIG_LAYERS=${TUI_BIG_LAYERS:-$layers} tui_big_family "$tmp/big"
big="'$tmp/big/base' '$tmp/big/ft' '$tmp/big/pt'"

start_merge() {
	tui_keys 4
	tui_wait "press r to merge" 60 || return 1
	tui_keys r
	tui_wait "c cancels" 30
}

tui_start 140 45 "cd '$tmp' && TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/out' $big"
check "opens on the heatmap" tui_wait "magnitude divergence"
# One thread keeps the merge running long enough to interact with it.
tui_keys 4 j j j +
check "threads set to 1" tui_wait "threads         1"
check "merge starts" start_merge

# Keypress-to-screen latency while the merge runs: toggle the help overlay.
lat=()
for i in $(seq 1 5); do
	tui_screen | grep -qF "c cancels" || break
	t0=$(date +%s%N)
	tui_keys '?'
	TUI_POLL=0.01 tui_wait "Keys (any key closes)" 5 >/dev/null || break
	t1=$(date +%s%N)
	lat+=($(((t1 - t0) / 1000000)))
	tui_keys x
	TUI_POLL=0.01 tui_wait_gone "Keys (any key closes)" 5 >/dev/null || break
done
if [ ${#lat[@]} -ge 3 ]; then
	median=$(printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	echo "keypress-to-screen latency during the merge: ${lat[*]} ms (median $median ms)"
	check "median keypress latency under 100 ms" [ "$median" -lt 100 ]
else
	bad "latency samples collected while the merge runs (${#lat[@]})"
fi

# Cancel with confirmation.
if tui_screen | grep -qF "c cancels"; then
	tui_keys c
	check "cancel asks first" tui_wait "Cancel the merge?"
	tui_keys y
	check "merge cancelled" tui_wait "cancelled: the partial output was removed" 60
	check "no output folder after cancel" test ! -e "$tmp/out"
	check "no partial folder after cancel" bash -c "! ls -d '$tmp'/out.partial-* 2>/dev/null"
else
	bad "merge still running when cancel was tried"
fi

# Resize mid-merge: smaller, too small, back.
check "second merge starts" start_merge
tmx resize-window -t t -x 100 -y 30
check "resized mid-merge still shows progress" tui_wait "Progress"
tmx resize-window -t t -x 50 -y 12
check "too small mid-merge" tui_wait "terminal too small"
tmx resize-window -t t -x 140 -y 45
check "back to full size" tui_wait "Validation"

# Quit during the merge: asks, cancels, exits cleanly, nothing partial.
if tui_screen | grep -qF "c cancels"; then
	tui_keys q
	check "quit asks while merging" tui_wait "A merge is running"
	tui_keys y
	check "quit exits with status 0" tui_wait "EXIT=0" 60
	check "terminal restored" tui_wait "icanon echo"
	check "nothing partial after quit" bash -c "! ls -d '$tmp'/out.partial-* 2>/dev/null && test ! -e '$tmp/out'"
else
	bad "merge still running when quit was tried"
fi

# Statistics are cached on disk: reopening the same family shows every cell
# at once, marked as cached.
tui_start 140 45 "cd '$tmp' && TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/out' $big"
check "reopened family uses cached statistics" tui_wait "cached " 30
tui_keys q
check "exit after the cached view" tui_wait "EXIT=0"

tui_summary
