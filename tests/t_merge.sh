#!/usr/bin/env bash
# t_merge.sh: the guarantees of `smelt merge` that do not need faults:
# byte-identical output whatever the thread count, --force, --dry-run,
# sharded output and its index, the files of the output folder, plain
# progress lines, and bad recipes refused with a specific message before
# any tensor is read. (Cancellation, kills, full disks and memory are in
# t_merge_faults.sh.)
#
# "Before any tensor is read" is shown two ways for every bad recipe:
#  - strace (when installed) sees no mkdir of OUT.partial-*: the run never
#    reached the executor, which only starts once the partial folder exists;
#  - page-cache residency: the model files (65 MB each, far more than the
#    kernel's read-ahead) are evicted before the run, and afterwards no more
#    of each is resident than after `smelt inspect`, which reads headers
#    only. Reading any tensor through the mapping would pull its pages in.
set -eu

. "$SMELT_SOURCE/tests/check.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
S=$SMELT_BIN

has() { grep -qF -- "$2" "$1"; }
no_partial() { ! compgen -G "$1.partial-*" > /dev/null; }

"$S" demo "$tmp/fam" > /dev/null
F=$tmp/fam
B=$F/base
C=$F/chat
M=$F/multilingual

# ---- 1. byte-identical output for 1 and 2 threads ----
# Small blocks (16 rows of the demo's 128 columns) so every matrix is cut
# into many blocks and statistics chunks that the two workers really share.
recipe_for() { # METHOD -> JSON on stdout
	case $1 in
	task_arithmetic) echo "{\"merge_method\":\"task_arithmetic\",\"base_model\":\"$B\",\"models\":[{\"model\":\"$C\",\"parameters\":{\"weight\":0.7}},{\"model\":\"$M\",\"parameters\":{\"weight\":0.4}}]}" ;;
	ties) echo "{\"merge_method\":\"ties\",\"base_model\":\"$B\",\"models\":[{\"model\":\"$C\",\"parameters\":{\"weight\":0.6,\"density\":0.4}},{\"model\":\"$M\",\"parameters\":{\"weight\":0.5,\"density\":0.7}}]}" ;;
	dare_ties) echo "{\"merge_method\":\"dare_ties\",\"base_model\":\"$B\",\"seed\":1234,\"models\":[{\"model\":\"$C\",\"parameters\":{\"weight\":0.6,\"density\":0.5}},{\"model\":\"$M\",\"parameters\":{\"weight\":0.5,\"density\":0.6}}]}" ;;
	widen) echo "{\"merge_method\":\"widen\",\"base_model\":\"$B\",\"models\":[{\"model\":\"$C\"},{\"model\":\"$M\"}]}" ;;
	slerp) echo "{\"merge_method\":\"slerp\",\"base_model\":\"$B\",\"parameters\":{\"t\":[0,0.3,0.8,1]},\"models\":[{\"model\":\"$C\"}]}" ;;
	della) echo "{\"merge_method\":\"della\",\"base_model\":\"$B\",\"seed\":99,\"models\":[{\"model\":\"$C\",\"parameters\":{\"weight\":0.6,\"density\":0.5,\"epsilon\":0.1}},{\"model\":\"$M\",\"parameters\":{\"weight\":0.5,\"density\":0.6,\"epsilon\":0.2}}]}" ;;
	esac
}
for m in task_arithmetic ties dare_ties widen slerp della; do
	recipe_for "$m" > "$tmp/$m.json"
	r1=0 r2=0
	SMELT_BLOCK_BYTES=8192 "$S" merge "$tmp/$m.json" -o "$tmp/det-$m-1" --threads 1 --quiet || r1=$?
	SMELT_BLOCK_BYTES=8192 "$S" merge "$tmp/$m.json" -o "$tmp/det-$m-2" --threads 2 --quiet || r2=$?
	if [ "$r1" -ne 0 ] || [ "$r2" -ne 0 ]; then
		bad "$m: merge failed (threads 1: $r1, threads 2: $r2)"
		continue
	fi
	h1=$(cd "$tmp/det-$m-1" && sha256sum -- *.safetensors)
	h2=$(cd "$tmp/det-$m-2" && sha256sum -- *.safetensors)
	if [ "$h1" = "$h2" ]; then ok "$m: threads 1 and 2 give identical bytes"; else
		bad "$m: threads 1 and 2 differ"; echo "$h1"; echo "$h2"; fi
	case $m in widen | dare_ties) ;; *) rm -rf "$tmp/det-$m-1" "$tmp/det-$m-2" ;; esac
done
# A seed changes the random methods' output, so the comparison above is not
# vacuous for them.
sed 's/"seed":1234/"seed":1235/' "$tmp/dare_ties.json" > "$tmp/dare2.json"
SMELT_BLOCK_BYTES=8192 "$S" merge "$tmp/dare2.json" -o "$tmp/dare2" --threads 2 --quiet
if cmp -s "$tmp/det-dare_ties-2/model.safetensors" "$tmp/dare2/model.safetensors"; then
	bad "dare_ties: seeds 1234 and 1235 give the same output"
else ok "dare_ties: another seed gives other bytes"; fi
rm -rf "$tmp/dare2" "$tmp"/det-dare_ties-*

# ---- 2. output folder contents (widen from above) ----
W=$tmp/det-widen-1
for f in config.json tokenizer_config.json generation_config.json smelt-recipe.json README.md model.safetensors; do
	check "widen output has $f" test -s "$W/$f"
done
check "tokenizer_config.json copied from the base" cmp -s "$W/tokenizer_config.json" "$B/tokenizer_config.json"
$py - "$W" > "$tmp/contents" 2>&1 <<'PY' || true
import json, sys
d = sys.argv[1]
c = json.load(open(d + "/config.json"))
print("layers", c.get("num_hidden_layers"), "dtype", c.get("torch_dtype"))
r = json.load(open(d + "/smelt-recipe.json"))
print("recipe", r.get("merge_method"))
PY
check "config.json keeps 8 layers and bf16" has "$tmp/contents" "layers 8 dtype bfloat16"
check "smelt-recipe.json names the method" has "$tmp/contents" "recipe widen"
card=$W/README.md
check "card starts with front matter" test "$(head -1 "$card")" = "---"
check "card lists the base in base_model" has "$card" "- $B"
check "card lists a model in base_model" has "$card" "- $M"
check "card tags merge" grep -qx -- "- merge" "$card"
check "card tags smelt" grep -qx -- "- smelt" "$card"
check "widen card has the mean weight table" has "$card" "## Mean weight per layer"
check "widen card has a row for layer 7" grep -q '^| 7 | [0-9.]* | [0-9.]* |$' "$card"

# Durability: by default OUT is renamed into place without waiting for the
# disk (like cp); --fsync flushes every file and the folder before the
# rename, and the parent folder after it.
if command -v strace > /dev/null && strace -f -qq -e trace=none -o /dev/null true 2> /dev/null; then
	for mode in plain fsync; do
		flag=
		[ "$mode" = fsync ] && flag=--fsync
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -qq \
			-e trace=fsync,fdatasync,rename,openat -o "$tmp/trace-$mode" \
			"$S" merge "$tmp/task_arithmetic.json" -o "$tmp/sync-$mode" $flag --quiet
	done
	check "without --fsync nothing is fsync'd" test "$(grep -c "fsync(" "$tmp/trace-plain")" = 0
	# One fsync per file of the finished folder plus one for the folder,
	# all before the folder is renamed onto OUT.
	files=$(find "$tmp/sync-fsync" -maxdepth 1 -type f | wc -l)
	before=$(awk '/rename\(".*partial-[^\/"]*", / { exit } /fsync\(/ { n++ } END { print n + 0 }' "$tmp/trace-fsync")
	check "--fsync flushes all $files files and the folder before OUT appears" test "$before" = $((files + 1))
	check "--fsync output equals the plain output" cmp -s "$tmp/sync-plain/model.safetensors" "$tmp/sync-fsync/model.safetensors"
	rm -rf "$tmp/sync-plain" "$tmp/sync-fsync"
else
	echo "note: strace unavailable; --fsync checks skipped"
fi

# passthrough of 6 layers in float16: config.json follows
cat > "$tmp/pt.yml" <<EOF
merge_method: passthrough
dtype: float16
slices:
  - sources:
      - model: $C
        layer_range: [0, 4]
  - sources:
      - model: $M
        layer_range: [6, 8]
EOF
"$S" merge "$tmp/pt.yml" -o "$tmp/pt" --quiet
$py -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['num_hidden_layers'], c['torch_dtype'])" \
	"$tmp/pt/config.json" > "$tmp/ptcfg"
check "passthrough config.json: 6 layers, float16" test "$(cat "$tmp/ptcfg")" = "6 float16"
check "passthrough card keeps the YAML recipe" has "$tmp/pt/README.md" '```yaml'

# Copies that convert or scale (passthrough with a scale, embed_policy
# common's rows beyond the shared vocabulary, mean's padding) go through
# the block copier rather than a raw byte copy.
$py "$SMELT_SOURCE/tests/merge_family.py" "$tmp/v1" 64 128 256 2 base m1
$py "$SMELT_SOURCE/tests/merge_family.py" "$tmp/v2" 64 128 300 2 m1
for pol in common mean; do
	cat > "$tmp/emb-$pol.yml" <<EOF
merge_method: task_arithmetic
base_model: $tmp/v1/base
embed_policy: $pol
dtype: float32
models:
  - model: $tmp/v1/m1
    parameters: {weight: 0.5}
  - model: $tmp/v2/m1
    parameters: {weight: 0.5}
EOF
	rc=0
	"$S" merge "$tmp/emb-$pol.yml" -o "$tmp/emb-$pol" --quiet 2> "$tmp/err" || rc=$?
	check "embed_policy $pol merges differing vocabularies (exit $rc)" test "$rc" -eq 0
done
$py - "$tmp" > "$tmp/emb" 2>&1 <<'PY' || true
import json, struct, sys
import numpy as np
t = sys.argv[1]
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.uint16 if v["dtype"] == "BF16" else np.float32)
        if v["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[k] = raw.reshape(v["shape"])
    return out
base = load(t + "/v1/base/model.safetensors")["model.embed_tokens.weight"]
common = load(t + "/emb-common/model.safetensors")["model.embed_tokens.weight"]
mean = load(t + "/emb-mean/model.safetensors")["model.embed_tokens.weight"]
print("common rows", common.shape[0], "mean rows", mean.shape[0])
print("common tail is the base" if np.array_equal(common[256:], base[256:]) else "common tail differs")
PY
check "embed_policy common keeps 256 rows, mean pads to 300" has "$tmp/emb" "common rows 256 mean rows 300"
check "embed_policy common: rows past the shared vocabulary are the base's" has "$tmp/emb" "common tail is the base"
cat > "$tmp/scaled.yml" <<EOF
merge_method: passthrough
slices:
  - sources:
      - model: $tmp/v1/m1
        layer_range: [0, 2]
        parameters: {scale: 0.5}
EOF
rc=0
"$S" merge "$tmp/scaled.yml" -o "$tmp/scaled" --quiet 2> "$tmp/err" || rc=$?
check "scaled passthrough (exit $rc)" test "$rc" -eq 0
$py - "$tmp/v1/m1/model.safetensors" "$tmp/scaled/model.safetensors" > "$tmp/sc" 2>&1 <<'PY' || true
import json, struct, sys
import numpy as np
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    k = "model.layers.1.self_attn.q_proj.weight"
    s, e = h[k]["data_offsets"]
    return (np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
print("scaled by 0.5" if np.array_equal(load(sys.argv[2]), 0.5 * load(sys.argv[1])) else "not scaled")
PY
check "scaled passthrough: weights are the input times 0.5" has "$tmp/sc" "scaled by 0.5"
rm -rf "$tmp/emb-common" "$tmp/emb-mean" "$tmp/scaled" "$tmp/pt"

# ---- 3. OUT exists and is not empty: refused unless --force ----
O=$tmp/exists
mkdir -p "$O/sub"
echo "keep me" > "$O/old.txt"
echo x > "$O/sub/deep.txt"
rc=0
"$S" merge "$tmp/task_arithmetic.json" -o "$O" --quiet 2> "$tmp/err" || rc=$?
check "non-empty OUT refused with exit 1" test "$rc" -eq 1
check "refusal names OUT and --force" has "$tmp/err" "$O: folder exists and is not empty (use --force"
check "refused OUT untouched" test -f "$O/old.txt"
check "refusal leaves no partial" no_partial "$O"
rc=0
"$S" merge "$tmp/task_arithmetic.json" -o "$O" --force --quiet 2> "$tmp/err" || rc=$?
check "--force replaces OUT (exit 0)" test "$rc" -eq 0
check "--force: old files gone" test ! -e "$O/old.txt" -a ! -e "$O/sub"
check "--force: new model present" test -s "$O/model.safetensors"
check "--force: no OUT.old-* left" test -z "$(compgen -G "$O.old-*" || true)"
check "--force: no partial left" no_partial "$O"
mkdir "$tmp/empty"
check "an empty OUT is used without --force" "$S" merge "$tmp/task_arithmetic.json" -o "$tmp/empty" --quiet
echo file > "$tmp/afile"
rc=0
"$S" merge "$tmp/task_arithmetic.json" -o "$tmp/afile" --force --quiet 2> "$tmp/err" || rc=$?
check "OUT that is a file is refused even with --force" test "$rc" -eq 1
check "file OUT message" has "$tmp/err" "exists and is not a folder"

# OUT given with a trailing slash names the same folder.
"$S" merge "$tmp/task_arithmetic.json" -o "$tmp/slash/" --quiet
check "-o OUT/ writes OUT" test -s "$tmp/slash/model.safetensors"
check "-o OUT/ leaves nothing inside OUT but the model" test -z "$(compgen -G "$tmp/slash/.partial-*" || true)"
"$S" merge "$tmp/task_arithmetic.json" -o "$tmp/slash//" --force --quiet
check "-o OUT// --force replaces OUT" test -s "$tmp/slash/model.safetensors" -a ! -e "$tmp/slash.old-"*
rm -rf "$tmp/slash" "$tmp/empty" "$O"

# --force never replaces a folder that is or holds one of the inputs.
cp -r "$F" "$tmp/famcopy"
sed "s#$F/#$tmp/famcopy/#g" "$tmp/task_arithmetic.json" > "$tmp/ta-copy.json"
for target in "$tmp/famcopy/chat" "$tmp/famcopy"; do
	rc=0
	"$S" merge "$tmp/ta-copy.json" -o "$target" --force --quiet 2> "$tmp/err" || rc=$?
	check "--force onto an input folder ($(basename "$target")) refused (exit $rc)" test "$rc" -eq 1
	check "refusal says OUT holds a model of the recipe" has "$tmp/err" "holds the recipe's model"
done
check "the inputs are intact" cmp -s "$tmp/famcopy/chat/model.safetensors" "$C/model.safetensors"
rm -rf "$tmp/famcopy"

# ---- 4. --dry-run ----
rc=0
"$S" merge "$tmp/ties.json" -o "$tmp/dry" --dry-run > "$tmp/plan" 2> "$tmp/err" || rc=$?
check "dry-run exits 0" test "$rc" -eq 0
check "dry-run names the method" grep -q "^method: ties" "$tmp/plan"
check "dry-run shows resolved per-model parameters" has "$tmp/plan" "weight=[0.6,0.5] density=[0.4,0.7]"
check "dry-run shows defaults resolved" has "$tmp/plan" "lambda=1 normalize=1"
check "dry-run shows bytes to read and write" grep -q "^reads [0-9.]* [kMG]*B, writes [0-9.]* [kMG]*B (disk needed)" "$tmp/plan"
check "dry-run shows estimated peak memory" has "$tmp/plan" "estimated peak memory"
check "dry-run writes no OUT" test ! -e "$tmp/dry"
check "dry-run writes no partial" no_partial "$tmp/dry"
"$S" merge "$tmp/ties.json" --dry-run --by-layer > "$tmp/plan2"
check "dry-run --by-layer groups by layer" grep -q "^layer 7:" "$tmp/plan2"

# ---- 5. sharded output ----
SH=$tmp/sharded
"$S" merge "$tmp/ties.json" -o "$SH" --out-shard-size 1MB --quiet
n=$(compgen -G "$SH/model-*-of-*.safetensors" | wc -l)
check "1MB shards: several shard files ($n)" test "$n" -ge 3
check "shard names model-0000k-of-0000N" test -s "$SH/$(printf 'model-%05d-of-%05d.safetensors' 1 "$n")" -a \
	-s "$SH/$(printf 'model-%05d-of-%05d.safetensors' "$n" "$n")"
check "index file present" test -s "$SH/model.safetensors.index.json"
check "no single model.safetensors beside the shards" test ! -e "$SH/model.safetensors"
"$S" inspect "$SH" --json > "$tmp/sh.json"
"$S" inspect "$B" --json > "$tmp/base.json"
$py - "$SH" "$tmp/sh.json" "$tmp/base.json" > "$tmp/shcheck" 2>&1 <<'PY' || true
import json, os, sys
d, got, ref = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
names = {t["name"] for t in got["tensors"]}
want = {t["name"] for t in ref["tensors"]}
print("every tensor listed" if names == want else "tensor sets differ: %s" % sorted(names ^ want)[:5])
print("weight_map complete" if set(idx["weight_map"]) == want else "weight_map incomplete")
files = {t["name"]: t["file"] for t in got["tensors"]}
print("weight_map agrees" if all(files[n] == f for n, f in idx["weight_map"].items()) else "weight_map disagrees")
total = sum(t["nbytes"] for t in got["tensors"])
print("total_size ok" if idx["metadata"]["total_size"] == total else
      "total_size %d, tensors %d" % (idx["metadata"]["total_size"], total))
PY
for line in "every tensor listed" "weight_map complete" "weight_map agrees" "total_size ok"; do
	if has "$tmp/shcheck" "$line"; then ok "sharded: $line"; else bad "sharded: $line: $(cat "$tmp/shcheck")"; fi
done
# The shards hold the same tensors as one file would.
"$S" merge "$tmp/ties.json" -o "$tmp/oneshard" --quiet
$py - "$SH" "$tmp/oneshard" > "$tmp/same" 2>&1 <<'PY' || true
import json, os, struct, sys
def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out
print("same tensors" if tensors(sys.argv[1]) == tensors(sys.argv[2]) else "tensors differ")
PY
check "sharded and single-file outputs hold the same tensors" has "$tmp/same" "same tensors"
rm -rf "$tmp/oneshard"

# ---- 6. non-TTY progress ----
rc=0
"$S" merge "$tmp/ties.json" -o "$tmp/plain" 2> "$tmp/progress" < /dev/null || rc=$?
check "merge with stderr to a file exits 0" test "$rc" -eq 0
check "no terminal escapes in plain progress" test "$(grep -c $'\033\|\r' "$tmp/progress")" -eq 0
check "a plain progress line" grep -q "^smelt: *[0-9.]*%  [0-9]*/75 tensors  read " "$tmp/progress"
check "final summary: time, GB/s, peak RssAnon" \
	grep -qE "^smelt: merged 75 tensors into .* in [0-9.]+ s, [0-9.]+ [kMG]?B/s read\+write, peak RssAnon [0-9.]+ MB$" \
	"$tmp/progress"
"$S" merge "$tmp/ties.json" -o "$tmp/quiet" --quiet 2> "$tmp/qerr"
check "--quiet prints nothing" test ! -s "$tmp/qerr"
rm -rf "$tmp/plain" "$tmp/quiet" "$tmp"/det-*

# ---- 7. bad recipes ----
# The residency proof needs model files much larger than the read-ahead.
G=$tmp/big
$py "$SMELT_SOURCE/tests/merge_family.py" "$G" 512 1408 8000 8 base m1
$py "$SMELT_SOURCE/tests/merge_family.py" "$tmp/wide" 512 1536 8000 8 m1
$py "$SMELT_SOURCE/tests/merge_family.py" "$tmp/voc" 512 1408 8064 8 m1
mkdir "$tmp/corrupt"
cp "$C"/* "$tmp/corrupt/"
printf '\377\377\377\377\000\000\000\000' | dd of="$tmp/corrupt/model.safetensors" conv=notrunc status=none
watched="$G/base/model.safetensors $G/m1/model.safetensors"
evict() { for f in $watched; do dd of="$f" oflag=nocache conv=notrunc,fdatasync count=0 status=none 2> /dev/null || true; done; }
resident() { # FILE -> resident bytes
	fincore --bytes --noheadings --output RES "$1" 2> /dev/null | tr -d ' '
}
residency=0
if command -v fincore > /dev/null; then
	evict
	r0=$(resident "$G/m1/model.safetensors")
	"$S" inspect "$G/m1" > /dev/null
	sleep 0.3 # read-ahead completes in the background
	header_res=$(resident "$G/m1/model.safetensors")
	size=$(stat -c %s "$G/m1/model.safetensors")
	# Twice the header-only figure absorbs read-ahead timing; reading the
	# tensors, as a merge does, makes the whole file resident.
	base_res=$((2 * ${header_res:-0}))
	if [ "${r0:-1}" = 0 ] && [ -n "$header_res" ] && [ "$base_res" -lt $((size / 2)) ]; then
		residency=1
		echo "note: residency check on; a header-only read leaves $header_res of $size bytes resident; bound $base_res"
	else
		echo "note: page cache cannot be evicted here (resident after eviction: ${r0:-?}, after inspect: ${header_res:-?} of $size); residency check skipped"
	fi
else
	echo "note: fincore not installed; residency check skipped"
fi
tracer=
if command -v strace > /dev/null && strace -f -qq -e trace=none -o /dev/null true 2> /dev/null; then
	tracer=1
else
	echo "note: strace unavailable; checking only that no partial folder remains"
fi

n_bad=0
bad_recipe() { # NAME FRAGMENT RECIPE-TEXT [EXTRA ARGS...]
	local name=$1 frag=$2 text=$3 out=$tmp/bad-out rc=0 t0 t1 f res
	shift 3
	n_bad=$((n_bad + 1))
	case $text in
	"{"*) printf '%s\n' "$text" > "$tmp/bad.json"; r=$tmp/bad.json ;;
	*) printf '%s\n' "$text" > "$tmp/bad.yml"; r=$tmp/bad.yml ;;
	esac
	[ "$residency" = 1 ] && evict
	t0=$(date +%s%N)
	if [ -n "$tracer" ]; then
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -qq -e trace=mkdir,mkdirat \
			-o "$tmp/trace" "$S" merge "$r" -o "${OUT_OVERRIDE:-$out}" --offline "$@" \
			> /dev/null 2> "$tmp/err" || rc=$?
	else
		"$S" merge "$r" -o "${OUT_OVERRIDE:-$out}" --offline "$@" > /dev/null 2> "$tmp/err" || rc=$?
	fi
	t1=$(date +%s%N)
	local problems=""
	[ "$rc" -eq 1 ] || problems="$problems exit $rc;"
	has "$tmp/err" "$frag" || problems="$problems message lacks '$frag';"
	grep -q "^smelt: error: \|^smelt: " "$tmp/err" || problems="$problems no smelt: line;"
	[ ! -e "$out" ] || problems="$problems OUT exists;"
	no_partial "$out" || problems="$problems partial left;"
	if [ -n "$tracer" ] && grep -q "partial-" "$tmp/trace"; then problems="$problems a partial folder was created;"; fi
	if [ "$residency" = 1 ]; then
		for f in $watched; do
			res=$(resident "$f")
			[ "${res:-0}" -le "$base_res" ] || problems="$problems $res bytes of $f resident (bound: $base_res);"
		done
	fi
	if [ -z "$problems" ]; then
		ok "bad recipe: $name ($(( (t1 - t0) / 1000000 )) ms): $(grep -m1 -F -- "$frag" "$tmp/err" | cut -c1-150)"
	else
		bad "bad recipe: $name:$problems"
		sed 's/^/    /' "$tmp/err" | head -5
	fi
	rm -rf "$out" "$out".partial-*
}

bad_recipe "unknown method" "merge_method: unknown merge method 'dare-ties'; did you mean 'dare_ties'?" \
"merge_method: dare-ties
base_model: $G/base
models:
  - model: $G/m1
    parameters: {weight: 0.5, density: 0.5}"
bad_recipe "missing merge_method" "merge_method: missing" \
"base_model: $G/base
models:
  - model: $G/m1"
bad_recipe "models and slices" "give either models: or slices:, not both" \
"merge_method: linear
models:
  - model: $G/m1
    parameters: {weight: 1}
slices:
  - sources:
      - model: $G/m1
        layer_range: [0, 8]"
bad_recipe "unknown key under --strict" "frobnicate: unknown key" \
"merge_method: linear
models:
  - model: $G/m1
    parameters: {weight: 1}
  - model: $G/base
    parameters: {weight: 1}
frobnicate: 3" --strict
bad_recipe "ties without base_model" "base_model: ties needs a base_model" \
"merge_method: ties
models:
  - model: $G/m1
    parameters: {weight: 0.5, density: 0.5}
  - model: $G/base
    parameters: {weight: 0.5, density: 0.5}"
bad_recipe "ties missing a per-model weight" "models[0].parameters.weight: required by ties but not set (model $G/m1)" \
"merge_method: ties
base_model: $G/base
models:
  - model: $G/m1
    parameters: {density: 0.5}"
bad_recipe "density out of range" "models[0].parameters.density: -0.5 is outside the range" \
"merge_method: ties
base_model: $G/base
models:
  - model: $G/m1
    parameters: {weight: 0.5, density: -0.5}"
bad_recipe "ties density 0 keeps nothing" "density 0 keeps 0 of" \
"merge_method: ties
base_model: $G/base
models:
  - model: $G/m1
    parameters: {weight: 0.5, density: 0}"
bad_recipe "model path not found" "models[1]: model '$G/nope' not found" \
"merge_method: linear
models:
  - model: $G/m1
    parameters: {weight: 1}
  - model: $G/nope
    parameters: {weight: 1}"
bad_recipe "slerp without t" "parameters.t: required by slerp but not set" \
"merge_method: slerp
base_model: $G/base
models:
  - model: $G/m1"
bad_recipe "model_stock with one model" "model_stock needs at least 2 models besides the base; the recipe has 1" \
"merge_method: model_stock
base_model: $G/base
models:
  - model: $G/m1"
bad_recipe "nearswap with two models" "nearswap takes at most 1 model besides the base; the recipe has 2" \
"merge_method: nearswap
base_model: $G/base
parameters: {t: 0.5}
models:
  - model: $G/m1
  - model: $C"
bad_recipe "della epsilon out of range" "epsilon 0.6 with density 0.5 puts keep probabilities outside (0,1)" \
"merge_method: della
base_model: $G/base
parameters: {epsilon: 0.6}
models:
  - model: $G/m1
    parameters: {weight: 0.5, density: 0.5}"
lines=$(grep -c . "$tmp/err" || true)
check "a check failing on every tensor is told in $lines lines (3 tensors and a count)" \
	grep -q "^smelt: error: .*: \.\.\. and 72 more tensors that della rejects$" "$tmp/err"
bad_recipe "layer_range past the model's layers" "layer_range [0, 12) goes past the 8 layers of '$G/m1'" \
"merge_method: passthrough
slices:
  - sources:
      - model: $G/m1
        layer_range: [0, 12]"
bad_recipe "layer_range start >= end" "slices[0].sources[0].layer_range: [5, 3) is empty" \
"merge_method: passthrough
slices:
  - sources:
      - model: $G/m1
        layer_range: [5, 3]"
bad_recipe "slice sources of different lengths" "slices[0].sources[1].layer_range: covers 6 layers but slices[0].sources[0] covers 4" \
"merge_method: slerp
base_model: $G/base
parameters: {t: 0.5}
slices:
  - sources:
      - model: $G/base
        layer_range: [0, 4]
      - model: $G/m1
        layer_range: [0, 6]"
bad_recipe "YAML syntax error" "YAML syntax error at line 4" \
"merge_method: linear
models:
  - model: $G/m1
   parameters: {weight: [1, }"
bad_recipe "JSON syntax error" "bad.json" \
"{\"merge_method\": \"linear\", \"models\": [{\"model\": \"$G/m1\",}"
bad_recipe "bad dtype" "dtype: unknown dtype 'float13'; did you mean 'float16'?" \
"merge_method: linear
dtype: float13
models:
  - model: $G/m1
    parameters: {weight: 1}
  - model: $G/base
    parameters: {weight: 1}"
bad_recipe "shape mismatch" "tensor model.layers.0.mlp.down_proj.weight: '$tmp/wide/m1' has shape [512, 1536] but the base has [512, 1408]" \
"merge_method: task_arithmetic
base_model: $G/base
models:
  - model: $G/m1
    parameters: {weight: 0.5}
  - model: $tmp/wide/m1
    parameters: {weight: 0.5}"
bad_recipe "vocabulary size mismatch" "tensor model.embed_tokens.weight: vocabulary sizes differ ('$tmp/voc/m1' has 8064 rows, the base has 8000)" \
"merge_method: task_arithmetic
base_model: $G/base
models:
  - model: $G/m1
    parameters: {weight: 0.5}
  - model: $tmp/voc/m1
    parameters: {weight: 0.5}"
bad_recipe "tokenizer_source union" "tokenizer_source: smelt does not build union tokenizers" \
"merge_method: linear
tokenizer_source: union
models:
  - model: $G/m1
    parameters: {weight: 1}
  - model: $G/base
    parameters: {weight: 1}"
bad_recipe "non-numeric weight" "models[0].parameters.weight: expected a number, found the string 'heavy'" \
"merge_method: linear
models:
  - model: $G/m1
    parameters: {weight: heavy}
  - model: $G/base
    parameters: {weight: 1}"
bad_recipe "LoRA reference" "models[0].model: '$G/m1+$G/lora' is a model+LoRA reference" \
"merge_method: linear
models:
  - model: $G/m1+$G/lora
    parameters: {weight: 1}
  - model: $G/base
    parameters: {weight: 1}"
bad_recipe "corrupt safetensors header" "models[1]: $tmp/corrupt/model.safetensors: header length 4294967295 exceeds" \
"merge_method: task_arithmetic
base_model: $G/base
models:
  - model: $G/m1
    parameters: {weight: 0.5}
  - model: $tmp/corrupt
    parameters: {weight: 0.5}"
OUT_OVERRIDE=$tmp/no/such/dir/out bad_recipe "output parent does not exist" \
	"$tmp/no/such/dir/out: parent folder $tmp/no/such/dir does not exist" \
"merge_method: task_arithmetic
base_model: $G/base
models:
  - model: $G/m1
    parameters: {weight: 0.5}"
echo "($n_bad bad recipes)"
# Control: the same measure sees a merge that does read the tensors.
if [ "$residency" = 1 ]; then
	evict
	cat > "$tmp/good.json" <<EOF
{"merge_method": "task_arithmetic", "base_model": "$G/base", "models": [{"model": "$G/m1", "parameters": {"weight": 0.5}}]}
EOF
	"$S" merge "$tmp/good.json" -o "$tmp/good" --quiet
	res=$(resident "$G/m1/model.safetensors")
	check "control: a merge that reads the tensors leaves $res bytes resident, over the bound $base_res" \
		test "${res:-0}" -gt "$base_res"
	rm -rf "$tmp/good"
fi

check_summary
