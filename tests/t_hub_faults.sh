#!/usr/bin/env bash
# smelt pull against a scripted server that misbehaves on request: a
# connection cut mid-file (within one run and across runs), 503 with
# Retry-After, 200 to a Range request, wrong bytes, a slow transfer
# interrupted with Ctrl-C, a renamed repo, an unreachable Hub. "Only the
# missing bytes" is measured from the server's log (body bytes per request).
set -eu
: "${SMELT_BIN:?}" "${SMELT_SOURCE:?}"
WORK=$(mktemp -d)
. "$SMELT_SOURCE/tests/hub/lib.sh"
trap 'stop_fault; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

start_fault
export HF_ENDPOINT="$FAULT_URL"
export HF_HOME="$WORK/hfhome"
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE HF_HUB_CACHE HUGGINGFACE_HUB_CACHE || true
SIZE=$((4 << 20))
K=1000000

mode() { http_get "$FAULT_URL/_ctl?mode=$1"; }
pull() { # OUT ARGS...
	local out=$1
	shift
	set +e
	"$SMELT_BIN" pull "$@" >"$WORK/$out.out" 2>"$WORK/$out.err"
	local rc=$?
	set -e
	return $rc
}
blob_lines() { log_since "$FAULT_LOG" "$1" | grep '^GET /blob/' || true; }
blob_bytes() { blob_lines "$1" | awk '$5 ~ /^[0-9]+$/ {s+=$5} END {print s+0}'; }
blob_ok() { # CACHE: the blob is in place and correct
	local b
	b=$(ls "$1/models--fault--model/blobs/" | grep -E '^[0-9a-f]{64}$' || true)
	[ -n "$b" ] && [ "$(sha256sum "$1/models--fault--model/blobs/$b" | cut -d' ' -f1)" = "$b" ]
}
leftovers() { ls "$1/models--fault--model/blobs/" | grep -c '\.' || true; }
clean_blob() { [ "$(leftovers "$1")" = 0 ] && blob_ok "$1"; }
rc_and_blob() { [ "$rc" = 0 ] && blob_ok "$1"; }
rc_and_grep() { [ "$rc" = "$1" ] && grep -q -- "$3" "$2"; }

# ---- cut within one run: resumed from the cut -------------------------------------
C="$WORK/c1"
mode "cut&k=$K"
mark=$(log_mark "$FAULT_LOG")
pull cut fault/model --cache-dir "$C" --connections 1 && rc=0 || rc=$?
check "pull survives a connection cut mid-file" [ "$rc" = 0 ] && true
check "...the retry asked for bytes=$K- only" \
	grep -q "bytes=$K-$((SIZE - 1)) 206 $((SIZE - K))" <(blob_lines "$mark")
check "...in total exactly the file's bytes were sent ($(blob_bytes "$mark") of $SIZE)" \
	[ "$(blob_bytes "$mark")" = "$SIZE" ]
check "...and the blob is verified and in place" blob_ok "$C"

# ---- cut in one of several parallel ranges ------------------------------------------------
C="$WORK/c1p"
mode "cut&k=300000"
mark=$(log_mark "$FAULT_LOG")
pull cutp fault/model --cache-dir "$C" --connections 4 && rc=0 || rc=$?
check "parallel ranges survive a cut in one of them" rc_and_blob "$C"
# The log line of the cut request says 300000 bytes; its retry starts there.
resume_at=$(blob_lines "$mark" | awk '$5 == 300000 {split($3, r, /[=-]/); print r[2] + 300000; exit}')
check "...the cut range resumed where it was cut (byte $resume_at)" \
	grep -q "bytes=$resume_at-" <(blob_lines "$mark")
check "...and the server sent the file's bytes once in total ($(blob_bytes "$mark") of $SIZE)" \
	[ "$(blob_bytes "$mark")" = "$SIZE" ]

# ---- cut, then the server keeps failing: resumed by the next run -------------------------
C="$WORK/c2"
mode "cutfail&k=$K"
mark=$(log_mark "$FAULT_LOG")
pull cf1 fault/model --cache-dir "$C" --connections 1 && rc=0 || rc=$?
check "first run fails once retries are spent" [ "$rc" = 1 ] && true
check "...with a plain message" grep -q "model.safetensors: server answered HTTP 500 after 6 tries" "$WORK/cf1.err"
check "...keeping the partial file and its range record" \
	[ -e "$C/models--fault--model/blobs/$(ls "$C/models--fault--model/blobs" | grep -m1 incomplete$)" ] 
check "...which records the $K bytes received" grep -qx "0 $K" "$C"/models--fault--model/blobs/*.incomplete.ranges
mode normal
mark2=$(log_mark "$FAULT_LOG")
pull cf2 fault/model --cache-dir "$C" --connections 4 && rc=0 || rc=$?
check "second run succeeds" [ "$rc" = 0 ]
check "...fetching only the missing $((SIZE - K)) bytes ($(blob_bytes "$mark2"))" \
	[ "$(blob_bytes "$mark2")" = "$((SIZE - K))" ]
first=$(blob_lines "$mark2" | awk '{print $3}' | sed -E 's/bytes=([0-9]+)-.*/\1/' | sort -n | head -1)
check "...its lowest range starts at the cut ($first)" [ "$first" = "$K" ]
check "...over both runs the server sent the file once ($(blob_bytes "$mark"))" [ "$(blob_bytes "$mark")" = "$SIZE" ]
check "...and the blob is verified, no leftovers" clean_blob "$C"

# ---- 503 with Retry-After --------------------------------------------------------------
C="$WORK/c3"
mode "busy&n=2"
mark=$(log_mark "$FAULT_LOG")
t0=$(date +%s.%N)
pull busy fault/model --cache-dir "$C" && rc=0 || rc=$?
t1=$(date +%s.%N)
waited=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
n503=$(log_since "$FAULT_LOG" "$mark" | grep -c ' 503 ' || true)
check "503 twice then success ($n503 x 503)" [ "$rc" = 0 -a "$n503" = 2 ]
check "...honouring Retry-After: 1 each time (${waited}s)" python3 -c "import sys; sys.exit(0 if $waited >= 1.9 else 1)"

# ---- 200 to a Range request ---------------------------------------------------------------
C="$WORK/c4"
mode norange
mark=$(log_mark "$FAULT_LOG")
pull norange fault/model --cache-dir "$C" --connections 4 && rc=0 || rc=$?
check "a server that ignores Range still gives a correct file" rc_and_blob "$C"
check "...after a ranged request was answered 200" \
	grep -qE 'bytes=[0-9]+-[0-9]+ 200' <(blob_lines "$mark")
check "...by falling back to one plain GET" grep -qE "^GET /blob/[0-9a-f]+ - 200 $SIZE\$" <(blob_lines "$mark")

# ---- wrong bytes ------------------------------------------------------------------------------
C="$WORK/c5"
mode badsum
pull bad fault/model --cache-dir "$C" && rc=0 || rc=$?
check "wrong bytes are caught by the SHA-256 check" rc_and_grep 1 "$WORK/bad.err" "checksum mismatch for model.safetensors"
check "...and nothing enters blobs/ (no blob, no partial file)" \
	[ -z "$(ls "$C/models--fault--model/blobs/" | grep -E '^[0-9a-f]{64}' || true)" ]
check "...and no snapshot link or ref is left pointing at it" \
	[ ! -e "$C/models--fault--model/refs/main" -a ! -e "$C/models--fault--model/snapshots/"*/model.safetensors ]
mode normal

# ---- Ctrl-C during a slow transfer, then resume ---------------------------------------------
C="$WORK/c6"
mode slow
mark=$(log_mark "$FAULT_LOG")
"$SMELT_BIN" pull fault/model --cache-dir "$C" --connections 1 >"$WORK/int.out" 2>"$WORK/int.err" &
pid=$!
for _ in $(seq 1 100); do
	[ -s "$(ls "$C"/models--fault--model/blobs/*.ranges 2>/dev/null | head -1)" ] && break
	sleep 0.05
done
sleep 0.3
kill -INT $pid
rc=0
wait $pid || rc=$?
check "Ctrl-C stops the pull" rc_and_grep 1 "$WORK/int.err" "cancelled; run the same command again to resume"
have=$(awk 'NR > 2 {s += $2 - $1} END {print s+0}' "$C"/models--fault--model/blobs/*.incomplete.ranges)
check "...recording the $have bytes already written" [ "$have" -gt 0 -a "$have" -lt "$SIZE" ]
mode normal
# The server logs the interrupted request when it notices the hang-up.
for _ in $(seq 1 100); do [ -n "$(blob_lines "$mark")" ] && break; sleep 0.05; done
mark2=$(log_mark "$FAULT_LOG")
pull resume fault/model --cache-dir "$C" --connections 1 && rc=0 || rc=$?
check "the next pull resumes and completes" rc_and_blob "$C"
check "...fetching exactly the $((SIZE - have)) missing bytes ($(blob_bytes "$mark2"))" \
	[ "$(blob_bytes "$mark2")" = "$((SIZE - have))" ]

# ---- renamed repo: relative redirect followed on HEAD ------------------------------------------
C="$WORK/c7"
mark=$(log_mark "$FAULT_LOG")
pull ren fault/renamed --cache-dir "$C" && rc=0 || rc=$?
check "relative redirect of the API (renamed repo) is followed" \
	rc_and_grep 0 <(log_since "$FAULT_LOG" "$mark") '^GET /api/models/fault/renamed/revision/main?blobs=true - 307 '
check "relative redirect of resolve HEADs (renamed repo) is followed" \
	rc_and_grep 0 <(log_since "$FAULT_LOG" "$mark") '^HEAD /fault/renamed/resolve/.* 307 '

# ---- a file list that tries to escape the cache --------------------------------------------
mark=$(log_mark "$FAULT_LOG")
pull evil fault/evil --cache-dir "$WORK/c8/cache" && rc=0 || rc=$?
check "a server-sent path with '..' is refused" \
	rc_and_grep 1 "$WORK/evil.err" "fault/evil lists an unsafe file name: file name '../../../escaped.safetensors'"
check "...before any file request, and nothing is written outside the cache" \
	[ "$(log_since "$FAULT_LOG" "$mark" | grep -vc '^GET /api/' || true)" = 0 -a ! -e "$WORK/c8/escaped.safetensors" -a ! -e "$WORK/escaped.safetensors" ]

# ---- the Hub unreachable -------------------------------------------------------------------------
dead="http://127.0.0.1:$(free_port)"
HF_ENDPOINT="$dead" pull dead1 fault/model --cache-dir "$WORK/c1" && rc=0 || rc=$?
check "unreachable Hub: the cached snapshot is used, with a warning" \
	[ "$rc" = 0 -a "$(tail -n 1 "$WORK/dead1.out")" = "$(ls -d "$WORK"/c1/models--fault--model/snapshots/*)" ]
check "...the warning says so" grep -q "using the cached snapshot" "$WORK/dead1.err"
HF_ENDPOINT="$dead" pull dead2 fault/model --cache-dir "$WORK/nothing" && rc=0 || rc=$?
check "unreachable Hub and nothing cached: a plain error" \
	rc_and_grep 1 "$WORK/dead2.err" "fault/model@main is not cached and the Hub is unreachable: cannot reach $dead"

check_summary
