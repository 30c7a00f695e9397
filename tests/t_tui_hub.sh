#!/usr/bin/env bash
# t_tui_hub.sh: models already in the Hugging Face cache are listed with
# sizes and revisions, can be picked from the list or typed as
# org/name[@rev], and open like local folders; an uncached name says how to
# get it.
set -eu
. "$(dirname "$0")/tui_lib.bash"
tui_require_methods

tmp=$(mktemp -d)
trap 'tui_cleanup; rm -rf "$tmp"' EXIT
fam=$(tui_family)
export XDG_CACHE_HOME="$tmp/cache" HF_HUB_CACHE="$tmp/hf"

# cache_model NAME SOURCE_FOLDER: huggingface_hub's layout, one commit on main.
cache_model() {
	local repo="$HF_HUB_CACHE/models--smelt-test--$1" commit
	commit=$(printf '%s' "$1" | sha1sum | cut -c1-40)
	mkdir -p "$repo/blobs" "$repo/refs" "$repo/snapshots/$commit"
	printf '%s' "$commit" >"$repo/refs/main"
	for f in model.safetensors config.json; do
		local etag
		etag=$(sha256sum "$2/$f" | cut -c1-64)
		cp "$2/$f" "$repo/blobs/$etag"
		ln -s "../../blobs/$etag" "$repo/snapshots/$commit/$f"
	done
}
cache_model tiny-base "$fam/base"
cache_model tiny-ft "$fam/ft"
cache_model tiny-pt "$fam/pt"

tui_start 140 45 "cd '$tmp' && TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/out'"
check "cache listed" tui_wait "Hugging Face cache (3)"
check "repo with size" tui_wait "smelt-test/tiny-base"
check "revision shown" tui_wait "main@"
check "size shown" tui_wait "3.48 MB"

# Cache pane: base from the first entry, ft from the second.
tui_keys Tab b
check "base from the cache" tui_wait "base: smelt-test/tiny-base"
tui_keys j a
check "model from the cache" tui_wait "model 1: smelt-test/tiny-ft"
# Typed reference with a revision.
tui_keys / "smelt-test/tiny-pt@main" Enter
check "typed org/name@rev" tui_wait "model 2: smelt-test/tiny-pt@main"
tui_keys Tab j j
check "cached model opens" tui_wait "LlamaForCausalLM"
check "snapshot path shown" tui_wait "models--smelt-test--tiny-pt"
tui_keys / "smelt-test/not-there" Enter
check "uncached name explains" tui_wait "is not in the cache: press P to download it"
# Mouse: click the third cache entry (screen row 29 of 45), then Enter.
tui_keys 1
tui_keys -l $'\e[<0;10;29M'
tui_keys -l $'\e[<0;10;29m'
tui_keys Enter
check "click selects a cache entry" tui_wait "smelt-test/tiny-pt is already picked"
tui_keys 2
check "heatmap from cached models" tui_wait "magnitude divergence"
tui_keys 4
check "cached models validate" tui_wait "press r to merge" 30
tui_keys q
check "clean exit" tui_wait "EXIT=0"

check_summary
