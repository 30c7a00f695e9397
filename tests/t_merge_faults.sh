#!/usr/bin/env bash
# t_merge_faults.sh: a merge that is interrupted or cannot write its output
# never leaves a folder that looks complete, says so in one line, and the
# next run cleans up; peak anonymous memory stays bounded on a family of
# about 0.5 GB per model.
#
#   SIGINT/SIGTERM  exit 130, "cancelled; nothing was written", no OUT, no partial
#   SIGKILL         no OUT; OUT.partial-* with its .smelt-partial marker may
#                   remain; the next run removes it and succeeds
#   SIGPIPE         (stderr's reader gone) ignored: the merge completes
#   write faults    file-size limit (EFBIG), a 2 MB tmpfs, a tmpfs out of
#                   inodes half-way through, a read-only destination: exit 1,
#                   one message naming OUT and the cause, nothing left
set -eu

. "$SMELT_SOURCE/tests/check.sh"
tmp=$(mktemp -d)
mounts=()
cleanup() {
	local m
	for m in "${mounts[@]}"; do umount "$m" 2> /dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
py=/usr/bin/python3
S=$SMELT_BIN

has() { grep -qF -- "$2" "$1"; }
partials() { compgen -G "$1.partial-*" || true; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# 65 MB per model: long enough to be caught mid-write in every build.
G=$tmp/fam
$py "$SMELT_SOURCE/tests/merge_family.py" "$G" 512 1408 8000 8
cat > "$tmp/ties.json" << EOF
{"merge_method": "ties", "base_model": "$G/base", "models": [
 {"model": "$G/m1", "parameters": {"weight": 0.5, "density": 0.5}},
 {"model": "$G/m2", "parameters": {"weight": 0.5, "density": 0.5}}]}
EOF
cat > "$tmp/ta.json" << EOF
{"merge_method": "task_arithmetic", "base_model": "$G/base", "models": [
 {"model": "$G/m1", "parameters": {"weight": 0.5}},
 {"model": "$G/m2", "parameters": {"weight": 0.5}}]}
EOF

# Start a one-thread ties merge into $1 and wait until its partial folder
# exists and tensor bytes went out (more than the shard header). Sets pid.
start_and_wait_for_bytes() { # OUT
	local i w
	"$S" merge "$tmp/ties.json" -o "$1" --threads 1 > "$tmp/stdout" 2> "$tmp/err" &
	pid=$!
	for i in $(seq 1 1500); do
		if [ -n "$(partials "$1")" ]; then
			if [ ! -r "/proc/$pid/io" ]; then
				sleep 0.3 # no I/O counters here: give the writers a moment
				return 0
			fi
			w=$(awk '/^wchar:/ {print $2}' "/proc/$pid/io" 2> /dev/null || echo 0)
			[ "${w:-0}" -gt 2000000 ] && return 0
		fi
		kill -0 "$pid" 2> /dev/null || return 1
		sleep 0.01
	done
	return 1
}

# ---- SIGINT and SIGTERM: clean cancellation ----
for sig in INT TERM; do
	O=$tmp/out-$sig
	if ! start_and_wait_for_bytes "$O"; then
		bad "SIG$sig: the merge ended before it could be interrupted"
		wait "$pid" || true
		continue
	fi
	t0=$(now_ms)
	kill -"$sig" "$pid"
	rc=0
	wait "$pid" || rc=$?
	t1=$(now_ms)
	check "SIG$sig: exit status 130 (got $rc)" test "$rc" -eq 130
	check "SIG$sig: stopped within 5 s ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 5000
	check "SIG$sig: says it was cancelled and nothing was written" has "$tmp/err" "$O: merge cancelled; nothing was written"
	check "SIG$sig: no OUT" test ! -e "$O"
	check "SIG$sig: no partial folder left" test -z "$(partials "$O")"
done

# ---- SIGKILL: a recognisable partial folder at most, cleaned by the rerun ----
O=$tmp/out-KILL
if start_and_wait_for_bytes "$O"; then
	kill -KILL "$pid"
	rc=0
	{ wait "$pid"; } 2> /dev/null || rc=$?
	check "SIGKILL: killed (status $rc)" test "$rc" -eq 137
	check "SIGKILL: no OUT" test ! -e "$O"
	p=$(partials "$O")
	if [ -n "$p" ] && [ "$(echo "$p" | wc -l)" -eq 1 ]; then
		ok "SIGKILL: one partial folder remains: $(basename "$p")"
		check "SIGKILL: the partial folder holds the .smelt-partial marker with the dead pid" \
			test "$(cat "$p/.smelt-partial" 2> /dev/null)" = "$pid"
		check "SIGKILL: no finished model.safetensors in the partial folder" test ! -e "$p/model.safetensors"
	else
		check "SIGKILL: at most one partial folder" test -z "$p"
	fi
	rc=0
	"$S" merge "$tmp/ta.json" -o "$O" --quiet 2> "$tmp/err" || rc=$?
	check "SIGKILL: the rerun succeeds" test "$rc" -eq 0
	check "SIGKILL: the rerun removed the stale partial folder" test -z "$(partials "$O")"
	"$S" merge "$tmp/ta.json" -o "$tmp/clean" --quiet
	check "SIGKILL: the rerun's weights equal a clean run's" cmp -s "$O/model.safetensors" "$tmp/clean/model.safetensors"
	rm -rf "$O" "$tmp/clean"
else
	bad "SIGKILL: the merge ended before it could be killed"
	wait "$pid" || true
fi

# ---- stderr reader gone (smelt merge ... 2>&1 | head): the merge goes on ----
O=$tmp/out-pipe
("$S" merge "$tmp/ties.json" -o "$O" --threads 1 2>&1; echo $? > "$tmp/pipe-rc") | head -c 10 > /dev/null
check "stderr closed by its reader: the merge still exits 0 (got $(cat "$tmp/pipe-rc"))" test "$(cat "$tmp/pipe-rc")" = 0
check "stderr closed by its reader: OUT is complete" test -s "$O/model.safetensors" -a -s "$O/README.md"
check "stderr closed by its reader: no partial folder" test -z "$(partials "$O")"
rm -rf "$O"

# ---- OUT filled by another process during the merge: not replaced ----
O=$tmp/out-race
"$S" merge "$tmp/ta.json" -o "$O" --quiet 2> "$tmp/err" &
pid=$!
caught=
for i in $(seq 1 2000); do
	if [ -n "$(partials "$O")" ] && kill -STOP "$pid" 2> /dev/null; then caught=1; break; fi
	kill -0 "$pid" 2> /dev/null || break
	sleep 0.005
done
if [ -n "$caught" ]; then
	mkdir "$O"
	echo theirs > "$O/theirs.txt"
	kill -CONT "$pid"
	rc=0
	wait "$pid" || rc=$?
	check "OUT filled during the merge: exit 1 (got $rc)" test "$rc" -eq 1
	check "OUT filled during the merge: says so" has "$tmp/err" "$O: was filled by something else during the merge"
	check "OUT filled during the merge: the other folder is untouched" test "$(ls "$O")" = theirs.txt
	check "OUT filled during the merge: no partial folder" test -z "$(partials "$O")"
else
	wait "$pid" || true
	echo "note: the merge ended before its partial folder was seen; race case skipped"
fi
rm -rf "$O"

# A partial folder of a run that is still alive is left alone.
mkdir "$tmp/live.partial-abcdef"
echo $$ > "$tmp/live.partial-abcdef/.smelt-partial"
mkdir "$tmp/live.partial-notours"
"$S" merge "$tmp/ta.json" -o "$tmp/live" --quiet
check "a live run's partial folder is kept" test -d "$tmp/live.partial-abcdef"
check "a folder without the marker is not ours and is kept" test -d "$tmp/live.partial-notours"
rm -rf "$tmp"/live*

# ---- write faults ----
write_fault() { # NAME OUT FRAGMENT... (run with the fault already in place; stderr in $tmp/err)
	local name=$1 out=$2 problems="" f lines
	shift 2
	[ "$rc" -eq 1 ] || problems="$problems exit $rc;"
	lines=$(grep -c . "$tmp/err" || true)
	[ "$lines" -eq 1 ] || problems="$problems $lines lines of messages;"
	has "$tmp/err" "$out" || problems="$problems message does not name $out;"
	for f in "$@"; do has "$tmp/err" "$f" || problems="$problems message lacks '$f';"; done
	[ ! -e "$out" ] || problems="$problems OUT exists;"
	[ -z "$(partials "$out")" ] || problems="$problems partial folder left;"
	if [ -z "$problems" ]; then ok "$name: $(cat "$tmp/err")"; else
		bad "$name:$problems"
		sed 's/^/    /' "$tmp/err" | head -5
	fi
}

# (a) a file-size limit below the 68 MB shard (smelt ignores SIGXFSZ)
O=$tmp/out-fsize
rc=0
(ulimit -f 20000 && exec "$S" merge "$tmp/ta.json" -o "$O" --quiet) 2> "$tmp/err" || rc=$?
write_fault "file-size limit" "$O" "File too large"

"$S" demo "$tmp/demo" > /dev/null
D=$tmp/demo
cat > "$tmp/demo.json" << EOF
{"merge_method": "task_arithmetic", "base_model": "$D/base", "models": [
 {"model": "$D/chat", "parameters": {"weight": 0.5}},
 {"model": "$D/multilingual", "parameters": {"weight": 0.5}}]}
EOF
mount_tmpfs() { # DIR OPTIONS
	mkdir -p "$1"
	if mount -t tmpfs -o "$2" smelt-test "$1" 2> /dev/null; then
		mounts+=("$1")
		return 0
	fi
	return 1
}
if [ "$(id -u)" -eq 0 ] && mount_tmpfs "$tmp/small" size=2m; then
	# (b) a 2 MB filesystem for a 3.4 MB merge: refused up front
	O=$tmp/small/out
	rc=0
	"$S" merge "$tmp/demo.json" -o "$O" --quiet 2> "$tmp/err" || rc=$?
	write_fault "2 MB tmpfs" "$O" "not enough disk space"
	check "2 MB tmpfs left empty" test -z "$(ls -A "$tmp/small")"
	# (b2) room for the bytes but few inodes: the filesystem fills up at
	# each step of the run in turn (2: the partial folder's marker, 3: the
	# shard, 4: config.json once the weights are written).
	for n in 2 3 4; do
		if mount_tmpfs "$tmp/inodes$n" size=64m,nr_inodes=$n; then
			O=$tmp/inodes$n/out
			rc=0
			"$S" merge "$tmp/demo.json" -o "$O" --quiet 2> "$tmp/err" || rc=$?
			write_fault "tmpfs with $n inodes" "$O" "No space left on device"
			check "tmpfs with $n inodes left empty" test -z "$(ls -A "$tmp/inodes$n")"
		else
			echo "note: cannot mount a tmpfs with nr_inodes; skipped"
		fi
	done
	# (c) a read-only destination (root ignores chmod, so a read-only mount)
	if mount_tmpfs "$tmp/ro" ro,size=2m; then
		O=$tmp/ro/out
		rc=0
		"$S" merge "$tmp/demo.json" -o "$O" --quiet 2> "$tmp/err" || rc=$?
		write_fault "read-only filesystem" "$O" "Read-only file system"
	else
		echo "note: cannot mount a read-only tmpfs; skipped"
	fi
else
	echo "note: not root or cannot mount tmpfs: the 2 MB and inode-starved filesystem cases are skipped"
	if [ "$(id -u)" -ne 0 ]; then
		mkdir "$tmp/ro"
		chmod 555 "$tmp/ro"
		O=$tmp/ro/out
		rc=0
		"$S" merge "$tmp/demo.json" -o "$O" --quiet 2> "$tmp/err" || rc=$?
		write_fault "read-only folder" "$O" "Permission denied"
		chmod 755 "$tmp/ro"
	fi
fi

# (d) a filesystem without fallocate (simulated: posix_fallocate returns
# EOPNOTSUPP): the space cannot be reserved up front, so each shard is
# flushed before it is renamed and a write-back failure would still fail
# the run. Checked under strace: one fsync of the shard, before its rename.
cat > "$tmp/nofalloc.c" << 'EOF'
#include <errno.h>
#include <sys/types.h>
int posix_fallocate(int fd, off_t off, off_t len) { (void)fd; (void)off; (void)len; return EOPNOTSUPP; }
int posix_fallocate64(int fd, off_t off, off_t len) { (void)fd; (void)off; (void)len; return EOPNOTSUPP; }
EOF
if command -v cc > /dev/null && cc -shared -fPIC -o "$tmp/nofalloc.so" "$tmp/nofalloc.c" 2> /dev/null &&
	command -v strace > /dev/null && strace -f -qq -e trace=none -o /dev/null true 2> /dev/null; then
	O=$tmp/out-nofalloc
	rc=0
	LD_PRELOAD=$tmp/nofalloc.so ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=0 \
		strace -f -qq -e trace=fsync,rename -o "$tmp/trace-nofalloc" \
		"$S" merge "$tmp/demo.json" -o "$O" --quiet 2> "$tmp/err" || rc=$?
	check "no fallocate: the merge succeeds" test "$rc" -eq 0
	# the shard's temporary file is fsync'd, then renamed to model.safetensors
	awk '/fsync\(/ { synced = 1 } /rename\(.*model\.safetensors\.tmp-/ { print (synced ? "synced" : "not synced"); exit }' \
		"$tmp/trace-nofalloc" > "$tmp/nofalloc-order"
	check "no fallocate: the shard is flushed before its rename" test "$(cat "$tmp/nofalloc-order")" = synced
	"$S" merge "$tmp/demo.json" -o "$tmp/out-falloc" --quiet
	check "no fallocate: same bytes as with it" cmp -s "$O/model.safetensors" "$tmp/out-falloc/model.safetensors"
	rm -rf "$O" "$tmp/out-falloc"
else
	echo "note: no C compiler or strace: the no-fallocate case is skipped"
fi

# ---- peak anonymous memory on ~0.5 GB per model ----
# Sampled from /proc every 50 ms for at most 4 s per method (the merge is
# cancelled then if still running: the property is the bound, not the time).
H=$tmp/half
rm -rf "$G"
$py "$SMELT_SOURCE/tests/merge_family.py" "$H" 1024 2816 32000 16
size_mb=$(($(stat -c %s "$H/m1/model.safetensors") / 1000000))
for m in ties widen; do
	if [ "$m" = ties ]; then p='"parameters": {"weight": 0.5, "density": 0.5}'; else p='"parameters": {}'; fi
	cat > "$tmp/rss-$m.json" << EOF
{"merge_method": "$m", "base_model": "$H/base", "models": [
 {"model": "$H/m1", $p}, {"model": "$H/m2", $p}]}
EOF
	"$S" merge "$tmp/rss-$m.json" -o "$tmp/rss-out" --threads 2 --quiet 2> /dev/null &
	pid=$!
	peak=0 n=0 t0=$(now_ms) cancelled=""
	while kill -0 "$pid" 2> /dev/null; do
		v=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)
		if [ -n "$v" ]; then
			n=$((n + 1))
			[ "$v" -gt "$peak" ] && peak=$v
		fi
		if [ $(($(now_ms) - t0)) -gt 4000 ] && [ -z "$cancelled" ]; then
			kill -INT "$pid" 2> /dev/null || true
			cancelled=" (cancelled after 4 s)"
		fi
		sleep 0.05
	done
	wait "$pid" || true
	rm -rf "$tmp/rss-out"
	check "$m on $size_mb MB per model: peak RssAnon $((peak / 1024)) MB < 256 MB over $n samples$cancelled" \
		test "$n" -ge 5 -a "$peak" -gt 0 -a "$peak" -lt $((256 * 1024))
done

check_summary
