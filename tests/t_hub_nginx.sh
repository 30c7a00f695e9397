#!/usr/bin/env bash
# smelt pull against a local nginx playing the Hugging Face Hub: Hub-style
# API and resolve paths with X-Repo-Commit / X-Linked-Etag / X-Linked-Size,
# LFS files redirected to a "CDN" on another port (with Range support), a
# gated repo that wants a bearer token. What is measured comes from nginx's
# access log (method, URI, status, body bytes, Range, whether an
# Authorization header came).
set -eu
: "${SMELT_BIN:?}" "${SMELT_SOURCE:?}"
WORK=$(mktemp -d)
. "$SMELT_SOURCE/tests/hub/lib.sh"
trap 'stop_nginx; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

start_nginx
export HF_ENDPOINT="$HUB_URL"
export HF_HOME="$WORK/hfhome" # no token file, no stray user cache
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE HF_HUB_CACHE HUGGINGFACE_HUB_CACHE || true
CACHE="$WORK/cache"
MAIN=$(manifest 'm["repos"]["smelt-test/tiny"]["revisions"]["main"]')
PR=$(manifest 'm["repos"]["smelt-test/tiny"]["revisions"]["refs/pr/1"]')
DEFAULT_FILES="added_tokens.json,adapters/extra.safetensors,config.json,generation_config.json,model-00001-of-00002.safetensors,model-00002-of-00002.safetensors,model.safetensors.index.json,tokenizer.json"

pull() { # OUT_PREFIX ARGS... : stdout/stderr to $WORK/OUT_PREFIX.{out,err}, returns the exit code
	local out=$1
	shift
	set +e
	"$SMELT_BIN" pull "$@" >"$WORK/$out.out" 2>"$WORK/$out.err"
	local rc=$?
	set -e
	return $rc
}
check_fail() { # DESCRIPTION OUT PATTERN: the last pull ($rc) failed with a message matching PATTERN
	if [ "$rc" = 1 ] && grep -q -- "$3" "$WORK/$2.err"; then
		ok "$1"
	else
		bad "$1 (exit $rc: $(head -c 300 "$WORK/$2.err"))"
	fi
}
# Sum of body bytes of GETs on the CDN port in log lines since MARK.
cdn_bytes() { log_since "$ACCESS_LOG" "$1" | awk -v p="${CDN_URL##*:}" '$1==p && $2=="GET" {s+=$5} END {print s+0}'; }
lfs_total() { # REPO COMMIT: bytes of the default LFS files of a commit
	manifest "sum(e['size'] for f,e in m['repos']['$1']['commits']['$2'].items() if e['lfs'] and f.endswith('.safetensors'))"
}

# ---- fresh pull ------------------------------------------------------------
mark=$(log_mark "$ACCESS_LOG")
pull fresh smelt-test/tiny --cache-dir "$CACHE" && rc=0 || rc=$?
check "fresh pull exits 0" [ "$rc" = 0 ]
check "last stdout line is the snapshot folder" \
	[ "$(tail -n 1 "$WORK/fresh.out")" = "$CACHE/models--smelt-test--tiny/snapshots/$MAIN" ]
same=1
for f in config.json tokenizer.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors \
	adapters/extra.safetensors; do
	etag=$(manifest "m['repos']['smelt-test/tiny']['commits']['$MAIN']['$f']['etag']")
	src="$FX/www/cdn/$etag"
	[ -e "$src" ] || src="$FX/www/raw/models--smelt-test--tiny/$MAIN/$f"
	cmp -s "$src" "$CACHE/models--smelt-test--tiny/snapshots/$MAIN/$f" || same=0
done
check "snapshot files are byte-identical to the server's" [ "$same" = 1 ]
check "README.md and pytorch_model.bin are not fetched by default" \
	[ ! -e "$CACHE/models--smelt-test--tiny/snapshots/$MAIN/README.md" -a \
	! -e "$CACHE/models--smelt-test--tiny/snapshots/$MAIN/pytorch_model.bin" ]
want=$(lfs_total smelt-test/tiny "$MAIN")
got=$(cdn_bytes "$mark")
check "CDN sent exactly the LFS bytes once ($got of $want)" [ "$got" = "$want" ]
ranged=$(log_since "$ACCESS_LOG" "$mark" | grep -c '"bytes=[0-9]*-[0-9]*"' || true)
check "large files came as parallel ranged GETs ($ranged ranges)" [ "$ranged" -ge 3 ]
check "progress shows rate and ETA on stderr" grep -q 'ETA' "$WORK/fresh.err"
check "no Authorization header sent without a token" \
	[ "$(log_since "$ACCESS_LOG" "$mark" | awk '$7=="yes"' | wc -l)" = 0 ]

# ---- layout ------------------------------------------------------------------
if python3 "$HUB_DIR/check_layout.py" expect "$FX/manifest.json" "$CACHE" smelt-test/tiny \
	"main=$DEFAULT_FILES" 2>"$WORK/layout.err"; then
	ok "cache layout is exactly huggingface_hub's (blobs, refs/main, relative links, locks)"
else
	bad "cache layout"; cat "$WORK/layout.err"
fi

# ---- second pull: from the cache, no data -----------------------------------------
mark=$(log_mark "$ACCESS_LOG")
pull again smelt-test/tiny --cache-dir "$CACHE" && rc=0 || rc=$?
check "second pull exits 0 with the same snapshot" \
	[ "$rc" = 0 -a "$(tail -n 1 "$WORK/again.out")" = "$CACHE/models--smelt-test--tiny/snapshots/$MAIN" ]
reqs=$(log_since "$ACCESS_LOG" "$mark" | wc -l)
only_api=$(log_since "$ACCESS_LOG" "$mark" | grep -c '/api/models/smelt-test/tiny/revision/main' || true)
check "second pull made one API request and no file request ($reqs requests)" [ "$reqs" = 1 -a "$only_api" = 1 ]

# ---- revisions: refs/pr/1 (quoted), tag, commit ----------------------------------
mark=$(log_mark "$ACCESS_LOG")
pull pr smelt-test/tiny@refs/pr/1 --cache-dir "$CACHE" && rc=0 || rc=$?
check "pull of refs/pr/1 exits 0" [ "$rc" = 0 ]
check "revision refs/pr/1 was sent as refs%2Fpr%2F1" \
	grep -q '/revision/refs%2Fpr%2F1?blobs=true' <(log_since "$ACCESS_LOG" "$mark")
check "refs/refs/pr/1 holds the PR commit" [ "$(cat "$CACHE/models--smelt-test--tiny/refs/refs/pr/1")" = "$PR" ]
changed=$(manifest "sum(e['size'] for f,e in m['repos']['smelt-test/tiny']['commits']['$PR'].items() if e['lfs'] and f.endswith('.safetensors') and e['etag'] not in [x['etag'] for x in m['repos']['smelt-test/tiny']['commits']['$MAIN'].values()])")
got=$(cdn_bytes "$mark")
check "refs/pr/1 fetched only its changed LFS file ($got of $changed bytes), reusing blobs" [ "$got" = "$changed" ]
mark=$(log_mark "$ACCESS_LOG")
pull tag smelt-test/tiny@v1.0 --cache-dir "$CACHE" && rc=0 || rc=$?
check "tag v1.0 resolves to main's commit without data transfer" \
	[ "$rc" = 0 -a "$(cat "$CACHE/models--smelt-test--tiny/refs/v1.0")" = "$MAIN" -a "$(cdn_bytes "$mark")" = 0 ]
pull commit "smelt-test/tiny@$MAIN" --cache-dir "$CACHE" && rc=0 || rc=$?
check "a commit revision writes no ref file" [ "$rc" = 0 -a ! -e "$CACHE/models--smelt-test--tiny/refs/$MAIN" ]
if python3 "$HUB_DIR/check_layout.py" expect "$FX/manifest.json" "$CACHE" smelt-test/tiny \
	"main=$DEFAULT_FILES" "v1.0=$DEFAULT_FILES" "refs/pr/1=$DEFAULT_FILES" 2>"$WORK/layout.err"; then
	ok "layout still exact with three refs and shared blobs"
else
	bad "layout with three refs"; cat "$WORK/layout.err"
fi

# ---- offline ---------------------------------------------------------------------------
mark=$(log_mark "$ACCESS_LOG")
HF_HUB_OFFLINE=1 pull off smelt-test/tiny@refs/pr/1 --cache-dir "$CACHE" && rc=0 || rc=$?
check "HF_HUB_OFFLINE=1 serves the cached snapshot" \
	[ "$rc" = 0 -a "$(tail -n 1 "$WORK/off.out")" = "$CACHE/models--smelt-test--tiny/snapshots/$PR" ]
check "offline pull made no request" [ "$(log_since "$ACCESS_LOG" "$mark" | wc -l)" = 0 ]
pull off2 smelt-test/paged --offline --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "offline with nothing cached fails plainly" off2 "offline mode.*not in the cache"

# ---- errors ----------------------------------------------------------------------------
pull e1 smelt-test/nope --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "repo not found" e1 "repository smelt-test/nope not found"
pull e2 smelt-test/tiny@nope --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "revision not found" e2 "revision 'nope' not found in smelt-test/tiny"
pull e3 smelt-test/gated --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "gated repo without a token" e3 "gated repository.*HF_TOKEN"
HF_TOKEN=hf_wrongTokenValue999 pull e4 smelt-test/gated --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "bad token" e4 "rejected the token"
pull e5 smelt-test/missing --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "file missing" e5 "file 'model.safetensors' missing from smelt-test/missing@main"
pull e6 smelt-test/noweights --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "repo without safetensors" e6 "has no .safetensors weights"
pull e7 "../evil" --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "invalid repo id refused before any request" e7 "not valid"
pull e8 "smelt-test/tiny@../../x" --cache-dir "$CACHE" && rc=0 || rc=$?
check_fail "invalid revision refused" e8 "not a valid git ref"

# ---- token: env and token file, only to the Hub host -------------------------------------
mark=$(log_mark "$ACCESS_LOG")
HF_TOKEN="$TOKEN" pull g1 smelt-test/gated --cache-dir "$CACHE" && rc=0 || rc=$?
check "gated repo with HF_TOKEN" [ "$rc" = 0 ]
hub_auth=$(log_since "$ACCESS_LOG" "$mark" | awk -v p="${HUB_URL##*:}" '$1==p && $7=="yes"' | wc -l)
cdn_auth=$(log_since "$ACCESS_LOG" "$mark" | awk -v p="${CDN_URL##*:}" '$1==p && $7=="yes"' | wc -l)
cdn_reqs=$(log_since "$ACCESS_LOG" "$mark" | awk -v p="${CDN_URL##*:}" '$1==p' | wc -l)
check "token sent to the Hub ($hub_auth requests), never to the CDN ($cdn_auth of $cdn_reqs)" \
	[ "$hub_auth" -ge 3 -a "$cdn_auth" = 0 -a "$cdn_reqs" -ge 1 ]
rm -rf "$CACHE/models--smelt-test--gated"
mkdir -p "$HF_HOME" && printf '%s\n' "$TOKEN" >"$HF_HOME/token"
pull g2 smelt-test/gated --cache-dir "$CACHE" && rc=0 || rc=$?
check "gated repo with the token file \$HF_HOME/token" [ "$rc" = 0 ]
rm -f "$HF_HOME/token"
check "the token appears in no output, message or cache file" \
	sh -c "! grep -rqF -- '$TOKEN' '$WORK'/*.out '$WORK'/*.err '$CACHE'"

# ---- selection and listing -------------------------------------------------------------------
C2="$WORK/cache2"
pull inc smelt-test/tiny --include '*.json' --exclude 'generation_*' --cache-dir "$C2" && rc=0 || rc=$?
snap="$C2/models--smelt-test--tiny/snapshots/$MAIN"
check "--include/--exclude select exactly the matching files" \
	[ "$rc" = 0 -a "$(cd "$snap" && find . -mindepth 1 ! -type d | sort | tr '\n' ' ')" = "./added_tokens.json ./config.json ./model.safetensors.index.json ./tokenizer.json " ]
pull paged smelt-test/paged --include '*' --cache-dir "$C2" && rc=0 || rc=$?
PG=$(manifest 'm["repos"]["smelt-test/paged"]["revisions"]["main"]')
check "paginated tree listing: files from both pages, nested links" \
	[ "$rc" = 0 -a -f "$C2/models--smelt-test--paged/snapshots/$PG/nested/deeper/tokenizer_config.json" -a \
	"$(readlink "$C2/models--smelt-test--paged/snapshots/$PG/nested/deeper/tokenizer_config.json")" = \
	"../../../../blobs/$(manifest "m['repos']['smelt-test/paged']['commits']['$PG']['nested/deeper/tokenizer_config.json']['etag']")" ]

# ---- concurrent pulls on one cache -----------------------------------------------------------
C3="$WORK/cache3"
mark=$(log_mark "$ACCESS_LOG")
"$SMELT_BIN" pull smelt-test/tiny --cache-dir "$C3" --connections 2 >"$WORK/p1.out" 2>"$WORK/p1.err" &
p1=$!
"$SMELT_BIN" pull smelt-test/tiny --cache-dir "$C3" --connections 2 >"$WORK/p2.out" 2>"$WORK/p2.err" &
p2=$!
rc1=0; rc2=0
wait $p1 || rc1=$?
wait $p2 || rc2=$?
check "two concurrent pulls on one cache both succeed" [ "$rc1" = 0 -a "$rc2" = 0 ]
got=$(cdn_bytes "$mark")
want=$(lfs_total smelt-test/tiny "$MAIN")
check "...and each blob was downloaded once ($got of $want bytes)" [ "$got" = "$want" ]
if python3 "$HUB_DIR/check_layout.py" expect "$FX/manifest.json" "$C3" smelt-test/tiny \
	"main=$DEFAULT_FILES" 2>"$WORK/layout.err"; then
	ok "...and the cache they wrote together is exact"
else
	bad "concurrent layout"; cat "$WORK/layout.err"
fi

# ---- a cache written by huggingface_hub ------------------------------------------------------
HFC="$WORK/hfcache"
python3 "$HUB_DIR/make_fixture.py" hfcache "$FX" "$HFC"
HF_HUB_OFFLINE=1 HF_HUB_CACHE="$HFC" pull hf1 smelt-test/tiny@refs/pr/1 && rc=0 || rc=$?
check "reads huggingface_hub's cache offline (HF_HUB_CACHE, refs/pr/1)" \
	[ "$rc" = 0 -a "$(tail -n 1 "$WORK/hf1.out")" = "$HFC/models--smelt-test--tiny/snapshots/$PR" ]
mark=$(log_mark "$ACCESS_LOG")
HF_HUB_CACHE="$HFC" pull hf2 smelt-test/tiny && rc=0 || rc=$?
check "online pull over huggingface_hub's cache transfers no file ($(cdn_bytes "$mark") CDN bytes)" \
	[ "$rc" = 0 -a "$(cdn_bytes "$mark")" = 0 -a "$(log_since "$ACCESS_LOG" "$mark" | wc -l)" = 1 ]
C4="$WORK/cache4"
pull all1 smelt-test/tiny --include '*' --cache-dir "$C4" && pull all2 smelt-test/tiny@refs/pr/1 --include '*' --cache-dir "$C4" && rc=0 || rc=$?
python3 "$HUB_DIR/check_layout.py" signature "$HFC" >"$WORK/sig.hf"
python3 "$HUB_DIR/check_layout.py" signature "$C4" >"$WORK/sig.smelt"
if [ "$rc" = 0 ] && diff "$WORK/sig.hf" "$WORK/sig.smelt" >"$WORK/sig.diff"; then
	ok "smelt's cache is entry-for-entry identical to huggingface_hub's ($(wc -l <"$WORK/sig.hf") entries)"
else
	bad "cache differs from huggingface_hub's layout"; head -20 "$WORK/sig.diff"
fi

# ---- a partial download left by huggingface_hub -----------------------------------------------
# Older huggingface_hub resumes blobs/<etag>.incomplete by appending; smelt
# keeps its own partial files apart and neither trusts nor touches that one.
C5="$WORK/cache5"
S1=$(manifest "m['repos']['smelt-test/tiny']['commits']['$MAIN']['model-00001-of-00002.safetensors']['etag']")
mkdir -p "$C5/models--smelt-test--tiny/blobs"
head -c 1000000 /dev/zero >"$C5/models--smelt-test--tiny/blobs/$S1.incomplete"
pull hfpart smelt-test/tiny --cache-dir "$C5" && rc=0 || rc=$?
check "a huggingface_hub partial file is left alone and the blob is correct" \
	[ "$rc" = 0 -a "$(sha256sum "$C5/models--smelt-test--tiny/blobs/$S1" | cut -d' ' -f1)" = "$S1" -a \
	"$(stat -c %s "$C5/models--smelt-test--tiny/blobs/$S1.incomplete")" = 1000000 ]

# ---- disk full ---------------------------------------------------------------------------------
# Two ways to run out of room: a small filesystem (caught by the free-space
# check before downloading) and a file-size limit (the preallocation fails
# with EFBIG, as writes would with ENOSPC).
DF="$WORK/small"
mkdir -p "$DF"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=2m tmpfs "$DF" 2>/dev/null; then
	pull df smelt-test/tiny --cache-dir "$DF/cache" && rc=0 || rc=$?
	umount "$DF" || true
	check_fail "disk full on a 2 MiB filesystem" df "disk full: model-00001-of-00002.safetensors needs"
fi
(ulimit -f 2048; exec "$SMELT_BIN" pull smelt-test/tiny --cache-dir "$DF/cache2" >"$WORK/df2.out" 2>"$WORK/df2.err") && rc=0 || rc=$?
check_fail "disk full under a 2 MiB file-size limit" df2 "disk full"

check_summary
