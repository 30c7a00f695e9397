#!/usr/bin/env bash
# t_inspect.sh: `smelt demo` and `smelt inspect` end to end: the demo family,
# text and --json output (checked with python3's json), a sharded copy, a
# cache-style symlinked snapshot, and malformed inputs (exit 1, one line on
# stderr).
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$SMELT_SOURCE/tests/check.sh"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# ---- demo ----
"$SMELT_BIN" demo "$tmp/demo" >"$tmp/demo.out"
check "demo prints three folders" [ "$(wc -l <"$tmp/demo.out")" -eq 3 ]
check "demo folders exist" [ -f "$tmp/demo/base/model.safetensors" ] && [ -f "$tmp/demo/chat/config.json" ] &&
	[ -f "$tmp/demo/multilingual/README.md" ] && [ -f "$tmp/demo/base/tokenizer_config.json" ] &&
	[ -f "$tmp/demo/base/generation_config.json" ]
check "demo config says synthetic" $PY -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if c["smelt_demo"]["synthetic"] is True and c["num_hidden_layers"]==8 and c["architectures"]==["LlamaForCausalLM"] and c["tie_word_embeddings"] is False and c["torch_dtype"]=="bfloat16" else 1)' "$tmp/demo/chat/config.json"
"$SMELT_BIN" demo "$tmp/demo2" >/dev/null
check "demo is deterministic" cmp -s "$tmp/demo/multilingual/model.safetensors" "$tmp/demo2/multilingual/model.safetensors"
check "demo leaves no temporary files" [ -z "$(find "$tmp/demo" -name '*.tmp-*')" ]
set +e
"$SMELT_BIN" demo --bogus >/dev/null 2>&1
check "demo: unknown option is a usage error" [ $? -eq 2 ]
set -e

# ---- inspect: text ----
"$SMELT_BIN" inspect "$tmp/demo/base" >"$tmp/base.txt"
check "text lists 75 tensors" grep -q '^75 tensors' "$tmp/base.txt"
check "text shows architecture" grep -q 'LlamaForCausalLM (llama)' "$tmp/base.txt"
check "text shows layers" grep -q '^layers  *8 ' "$tmp/base.txt"
check "text: embedding first, head last" [ "$(grep -m1 'BF16' "$tmp/base.txt" | cut -d' ' -f1)" = model.embed_tokens.weight ] &&
	[ "$(grep 'BF16  ' "$tmp/base.txt" | tail -n1 | cut -d' ' -f1)" = lm_head.weight ]
check "text: layers in order" [ "$(grep -n 'model.layers.1.input' "$tmp/base.txt" | cut -d: -f1)" -lt "$(grep -n 'model.layers.7.input' "$tmp/base.txt" | cut -d: -f1)" ]

# ---- inspect: --json ----
"$SMELT_BIN" inspect "$tmp/demo/base" --json >"$tmp/base.json"
cat >"$tmp/check_json.py" <<'EOF'
import json, struct, sys, os
d = json.load(open(sys.argv[1]))
folder = sys.argv[2]
want_tensors, want_shards = int(sys.argv[3]), int(sys.argv[4])
assert set(d) == {"path", "tensors", "total_bytes", "num_layers"}, d.keys()
assert len(d["tensors"]) == want_tensors, len(d["tensors"])
assert d["num_layers"] == 8
assert d["total_bytes"] == sum(t["nbytes"] for t in d["tensors"])
assert len({t["file"] for t in d["tensors"]}) == want_shards
headers = {}
for t in d["tensors"]:
    assert set(t) == {"name", "dtype", "shape", "file", "offset", "nbytes"}, t.keys()
    path = os.path.join(folder, t["file"])
    if path not in headers:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            headers[path] = (n, json.loads(f.read(n)))
    n, h = headers[path]
    e = h[t["name"]]
    assert e["dtype"] == t["dtype"] and e["shape"] == t["shape"]
    assert t["offset"] == 8 + n + e["data_offsets"][0]
    assert t["nbytes"] == e["data_offsets"][1] - e["data_offsets"][0]
    assert t["offset"] + t["nbytes"] <= os.path.getsize(path)
EOF
check "json shape and offsets match the files" $PY "$tmp/check_json.py" "$tmp/base.json" "$tmp/demo/base" 75 1

# ---- sharded copy (3 shards + index) ----
mkdir -p "$tmp/sharded"
cat >"$tmp/shard.py" <<'EOF'
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
names = sorted(h)
parts = [names[i::3] for i in range(3)]
wm = {}
for i, part in enumerate(parts):
    fname = "model-%05d-of-%05d.safetensors" % (i + 1, 3)
    hdr, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k in part:
        s, e = h[k]["data_offsets"]
        blob = b[8 + n + s:8 + n + e]
        hdr[k] = {"dtype": h[k]["dtype"], "shape": h[k]["shape"], "data_offsets": [off, off + len(blob)]}
        off += len(blob); blobs.append(blob); wm[k] = fname
    hj = json.dumps(hdr, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(out + "/" + fname, "wb") as f:
        f.write(struct.pack("<Q", len(hj))); f.write(hj); [f.write(x) for x in blobs]
total = sum(h[k]["data_offsets"][1] - h[k]["data_offsets"][0] for k in h)
json.dump({"metadata": {"total_size": total}, "weight_map": wm}, open(out + "/model.safetensors.index.json", "w"), indent=2)
EOF
$PY "$tmp/shard.py" "$tmp/demo/base/model.safetensors" "$tmp/sharded"
cp "$tmp/demo/base/config.json" "$tmp/sharded/"
"$SMELT_BIN" inspect "$tmp/sharded" --json >"$tmp/sharded.json"
check "sharded: json shape and offsets" $PY "$tmp/check_json.py" "$tmp/sharded.json" "$tmp/sharded" 75 3
check "sharded: same total as single file" $PY -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(0 if a["total_bytes"]==b["total_bytes"] and [t["name"] for t in a["tensors"]]==[t["name"] for t in b["tensors"]] else 1)' "$tmp/base.json" "$tmp/sharded.json"
"$SMELT_BIN" inspect "$tmp/sharded" >"$tmp/sharded.txt"
check "sharded: text names 3 shards" grep -q 'in 3 shards (model.safetensors.index.json)' "$tmp/sharded.txt"

# ---- cache-style snapshot: a folder of relative symlinks into blobs/ ----
snap=$tmp/hub/models--demo--base/snapshots/0123456789abcdef0123456789abcdef01234567
mkdir -p "$tmp/hub/models--demo--base/blobs" "$snap"
cp "$tmp/demo/base/model.safetensors" "$tmp/hub/models--demo--base/blobs/aaaa"
cp "$tmp/demo/base/config.json" "$tmp/hub/models--demo--base/blobs/bbbb"
ln -s ../../blobs/aaaa "$snap/model.safetensors"
ln -s ../../blobs/bbbb "$snap/config.json"
check "cache snapshot folder" sh -c "'$SMELT_BIN' inspect '$snap' | grep -q '^75 tensors'"
check "single file path" sh -c "'$SMELT_BIN' inspect '$tmp/demo/chat/model.safetensors' --json | grep -q '\"num_layers\":'"

# ---- malformed inputs: exit 1 and exactly one stderr line ----
fails_cleanly() { # NAME FRAGMENT PATH
	local name=$1 frag=$2 path=$3 rc
	set +e
	"$SMELT_BIN" inspect "$path" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	set -e
	if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^smelt: .*$frag" "$tmp/err"; then
		ok "$name"
	else
		bad "$name (rc=$rc: $(head -c 300 "$tmp/err"))"
	fi
}
mkdir -p "$tmp/bad"
: >"$tmp/bad/empty.safetensors"
fails_cleanly "empty file" "HeaderTooSmall" "$tmp/bad/empty.safetensors"
head -c 1000 "$tmp/demo/base/model.safetensors" >"$tmp/bad/cut.safetensors"
fails_cleanly "truncated file" "InvalidHeaderLength" "$tmp/bad/cut.safetensors"
head -c 3000000 "$tmp/demo/base/model.safetensors" >"$tmp/bad/short.safetensors"
fails_cleanly "file missing its last bytes" "MetadataIncompleteBuffer" "$tmp/bad/short.safetensors"
printf 'not a safetensors file at all' >"$tmp/bad/text.safetensors"
fails_cleanly "text file" "HeaderTooLarge" "$tmp/bad/text.safetensors"
printf '\x31\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":1,"shape":[],"data_offsets":[0,0]}}' >"$tmp/bad/type.safetensors"
fails_cleanly "bad dtype type" "tensor 'a': dtype is a number" "$tmp/bad/type.safetensors"
fails_cleanly "missing path" "No such file or directory" "$tmp/nope"
mkdir -p "$tmp/bad/emptydir"
fails_cleanly "folder without weights" "no model.safetensors" "$tmp/bad/emptydir"
mkdir -p "$tmp/bad/escape"
cp "$tmp/sharded/"*.safetensors "$tmp/bad/escape/"
sed 's/"model-00001-of-00003.safetensors"/"..\/model-00001-of-00003.safetensors"/' \
	"$tmp/sharded/model.safetensors.index.json" >"$tmp/bad/escape/model.safetensors.index.json"
fails_cleanly "index escaping the folder" "not a plain file name" "$tmp/bad/escape"
mkdir -p "$tmp/bad/cfg"
cp "$tmp/demo/base/model.safetensors" "$tmp/bad/cfg/"
printf '{"num_hidden_layers": 8,' >"$tmp/bad/cfg/config.json"
fails_cleanly "invalid config.json" "config.json: invalid JSON" "$tmp/bad/cfg"

set +e
"$SMELT_BIN" inspect >/dev/null 2>&1
check "no path is a usage error" [ $? -eq 2 ]
"$SMELT_BIN" inspect --frobnicate "$tmp/demo/base" >/dev/null 2>&1
check "unknown option is a usage error" [ $? -eq 2 ]
set -e

check_summary
