#!/usr/bin/env bash
# t_hub_merge.sh: recipes that name Hugging Face models (org/name[@rev])
# against a local nginx playing the Hub (tests/hub/lib.sh). The models are
# downloaded into the cache only once the rest of the recipe is known to be
# sound, then merged; a recipe with another mistake downloads nothing.
set -eu
: "${SMELT_SOURCE:?}" "${SMELT_BIN:?}"
WORK=$(mktemp -d)
. "$SMELT_SOURCE/tests/hub/lib.sh"
trap 'stop_nginx; rm -rf "$WORK"' EXIT

start_nginx
export HF_ENDPOINT="$HUB_URL" HF_HOME="$WORK/hfhome" HF_HUB_CACHE="$WORK/cache"
export XDG_CACHE_HOME="$WORK/xdg"
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE HUGGINGFACE_HUB_CACHE || true
cd "$WORK"

# A recipe with a Hub model and a local mistake: refused, nothing fetched.
cat >bad.yml <<'YAML'
merge_method: task_arithmetic
base_model: smelt-test/tiny
models:
  - model: ./no-such-folder
    parameters: {weight: 1.0}
YAML
mark=$(log_mark "$ACCESS_LOG")
if "$SMELT_BIN" merge bad.yml -o out-bad 2>err-bad.txt; then
	bad "a recipe with a missing local model was accepted"
else
	ok "a recipe with a missing local model is refused"
fi
check "the message names the local model" grep -q "no-such-folder" err-bad.txt
check "nothing was downloaded for a refused recipe" [ "$(log_since "$ACCESS_LOG" "$mark" | wc -l)" -eq 0 ]
check "no output folder for a refused recipe" bash -c "! ls -d out-bad* 2>/dev/null"

# Offline with an empty cache: a plain error, no request.
mark=$(log_mark "$ACCESS_LOG")
cat >good.yml <<'YAML'
merge_method: linear
models:
  - model: smelt-test/tiny
    parameters: {weight: 1.0}
YAML
if HF_HUB_OFFLINE=1 "$SMELT_BIN" merge good.yml -o out-off 2>err-off.txt; then
	bad "offline merge with an empty cache succeeded"
else
	ok "offline merge with an empty cache fails"
fi
check "offline message says the model is not cached" grep -qi "cache" err-off.txt
check "offline made no request" [ "$(log_since "$ACCESS_LOG" "$mark" | wc -l)" -eq 0 ]

# Online: the model is pulled into the cache, then merged.
if "$SMELT_BIN" merge good.yml -o out 2>err-good.txt; then
	ok "a recipe naming a Hub model merges"
else
	bad "a recipe naming a Hub model fails: $(tail -n 2 err-good.txt)"
fi
check "the merged folder holds weights" test -s out/model.safetensors
check "the model is in the cache" bash -c "ls '$WORK'/cache/models--smelt-test--tiny/snapshots/*/config.json >/dev/null"
check "the card names the Hub model" grep -q "smelt-test/tiny" out/README.md

# Again, from the cache: no file is transferred.
mark=$(log_mark "$ACCESS_LOG")
"$SMELT_BIN" merge good.yml -o out2 --offline 2>/dev/null && ok "a second merge runs offline from the cache" ||
	bad "a second merge from the cache failed"
check "the second merge made no request" [ "$(log_since "$ACCESS_LOG" "$mark" | wc -l)" -eq 0 ]
check "both merges wrote the same weights" cmp -s out/model.safetensors out2/model.safetensors

check_summary
