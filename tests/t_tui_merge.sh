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

# A merge of this family lasts a second or so in an optimised build on an
# idle machine and much longer under load or a sanitizer, so nothing below
# assumes it is still running: each interaction is retried on a fresh merge
# when the previous one finished first.

# start_merge: (re)validate and start a merge into $tmp/out from the Run view.
start_merge() {
	rm -rf "$tmp/out"
	tui_keys 4 v
	tui_wait "press r to merge" 60 || return 1
	tui_keys r
	tui_wait "c cancels" 30
}

# merging: a merge is running now.
merging() { tui_screen | grep -qF "c cancels"; }

# wait_either A B [SECONDS]: wait until A or B is on screen; prints which.
wait_either() {
	local deadline=$(($(date +%s) + ${3:-30} * TUI_SCALE)) screen
	while [ "$(date +%s)" -le $deadline ]; do
		screen=$(tui_screen)
		if grep -qF -- "$1" <<<"$screen"; then echo "$1"; return 0; fi
		if grep -qF -- "$2" <<<"$screen"; then echo "$2"; return 0; fi
		sleep 0.05
	done
	echo "--- timed out waiting for '$1' or '$2'; screen:" >&2
	tui_screen >&2
	return 1
}

# toggle_help_ms: send ? and print how long until the help overlay shows;
# close it again. Fails when either step does not reach the screen.
toggle_help_ms() {
	local t0 t1
	t0=$(date +%s%N)
	tui_keys '?'
	TUI_POLL=0.01 tui_wait "Keys (any key closes)" 5 >/dev/null || return 1
	t1=$(date +%s%N)
	tui_keys x
	TUI_POLL=0.01 tui_wait_gone "Keys (any key closes)" 5 >/dev/null || return 1
	echo $(((t1 - t0) / 1000000))
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# open_workbench: a session on the big family, merging on one thread (which
# keeps a merge running as long as possible).
open_workbench() {
	tui_start 140 45 "cd '$tmp' && TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/out' $big"
	tui_wait "magnitude divergence" || return 1
	tui_keys 4 j j j +
	tui_wait "threads         1"
}
check "opens with one merge thread" open_workbench

# Keypress-to-screen latency: the same round trip (tmux send-keys, redraw,
# capture-pane) with no merge, then while merges run. The merge must not
# add more than 100 ms: the UI thread never waits for the workers. The
# baseline absorbs what the machine's load costs tmux and the shell.
base_lat=()
for i in $(seq 1 5); do
	ms=$(toggle_help_ms) && base_lat+=("$ms")
done
lat=()
check "merge starts" start_merge
for attempt in $(seq 1 20); do
	[ ${#lat[@]} -ge 5 ] && break
	merging || start_merge || continue
	ms=$(toggle_help_ms) || continue
	# Count the sample only if the merge ran for all of it.
	merging && lat+=("$ms")
done
if [ ${#lat[@]} -ge 3 ] && [ ${#base_lat[@]} -ge 3 ]; then
	m=$(median "${lat[@]}")
	b=$(median "${base_lat[@]}")
	echo "keypress-to-screen latency: idle ${base_lat[*]} ms (median $b), during the merge ${lat[*]} ms (median $m)"
	check "a merge adds under 100 ms to the keypress latency" [ $((m - b)) -lt 100 ]
else
	bad "latency samples collected (${#base_lat[@]} idle, ${#lat[@]} while merging)"
fi
tui_wait_gone "c cancels" 120 >/dev/null || true

# Cancel with confirmation (retried when a merge ends before the key).
cancelled=0
for attempt in $(seq 1 5); do
	start_merge || continue
	tui_keys c
	[ "$(wait_either "Cancel the merge?" "merged in")" = "Cancel the merge?" ] || continue
	tui_keys y
	r=$(wait_either "cancelled: the partial output was removed" "merged in" 60) || continue
	[ "$r" = "merged in" ] && continue
	cancelled=1
	break
done
check "merge cancelled after confirmation" [ $cancelled -eq 1 ]
check "no output folder after cancel" test ! -e "$tmp/out"
check "no partial folder after cancel" bash -c "! ls -d '$tmp'/out.partial-* 2>/dev/null"

# Resize while a merge runs (or has just finished): smaller, too small, back.
check "second merge starts" start_merge
tui_resize 100 30
check "resized mid-merge still shows progress" tui_wait "Progress"
tui_resize 50 12
check "too small mid-merge" tui_wait "terminal too small"
tui_resize 140 45
check "back to full size" tui_wait "Validation"
tui_wait_gone "c cancels" 120 >/dev/null || true

# Quit during a merge: asks, cancels, exits cleanly, nothing partial.
asked=0
for attempt in $(seq 1 5); do
	start_merge || continue
	tui_keys q
	r=$(wait_either "A merge is running" "EXIT=") || continue
	if [ "$r" = "EXIT=" ]; then
		# The merge ended before the key: a new session, a new try.
		open_workbench || true
		continue
	fi
	asked=1
	break
done
check "quit asks while merging" [ $asked -eq 1 ]
if [ $asked -eq 1 ]; then
	tui_keys y
	check "quit exits with status 0" tui_wait "EXIT=0" 60
	check "terminal restored" tui_wait "icanon echo"
	check "nothing partial after quit" bash -c "! ls -d '$tmp'/out.partial-* 2>/dev/null && test ! -e '$tmp/out'"
fi

# Statistics are cached on disk: reopening the same family shows every cell
# at once, marked as cached.
tui_start 140 45 "cd '$tmp' && TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/out' $big"
check "reopened family uses cached statistics" tui_wait "cached " 30
tui_keys q
check "exit after the cached view" tui_wait "EXIT=0"

check_summary
