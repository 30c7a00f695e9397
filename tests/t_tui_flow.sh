#!/usr/bin/env bash
# t_tui_flow.sh: the workbench end to end in tmux on the demo family
# (`smelt demo`: base, chat, multilingual): pick models in the file browser,
# see their details, view every heatmap mode, change the WIDEN temperature
# and see the preview change, save the recipe, validate, run a merge to
# completion, quit with the terminal restored, reopen with the saved recipe.
set -eu
. "$(dirname "$0")/tui_lib.bash"
tui_require_methods

tmp=$(mktemp -d)
trap 'tui_cleanup; rm -rf "$tmp"' EXIT
"$SMELT_BIN" demo "$tmp/family" >/dev/null
export XDG_CACHE_HOME="$tmp/cache" HF_HUB_CACHE="$tmp/hf"

tui_start 140 45 "cd '$tmp/family' && TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/out'"

check "opens on the checkpoints view" tui_wait "Local folders"
check "lists the family folders" tui_wait "base/"
check "shows the empty HF cache" tui_wait "no models cached"

# Entries: ../ base/ chat/ multilingual/ (folders first, sorted).
tui_keys j b
check "base picked" tui_wait "base: $tmp/family/base"
tui_keys j a
check "chat added" tui_wait "model 1: $tmp/family/chat"
tui_keys j a
check "multilingual added" tui_wait "model 2: $tmp/family/multilingual"
check "base details" tui_wait "LlamaForCausalLM"
tui_keys Tab Tab j
check "model details show compatibility" tui_wait "compatible with the base"
check "model layer count shown" tui_wait "layers        8"

tui_keys 2
check "heatmap magnitude mode" tui_wait "magnitude divergence"
check "heatmap finishes computing" tui_wait_gone "computing" 60
check "cursor cell numbers" tui_wait "omega     mean"
check "legend shows the scale" tui_wait "linear"
tui_keys m
check "direction mode" tui_wait "direction divergence"
tui_keys m
check "weight mode" tui_wait "WIDEN weight"
tui_keys s
check "log scale" tui_wait "log scale"
tui_keys s j l
check "cursor moves to layer 1" tui_wait "layer 1  k"
# Mouse (SGR 1006 reports, as xterm sends them): click the cell of layer 2,
# kind v in the first panel (text row 7, column 17), then wheel down. The
# press and the release go in one write, as a quick click often arrives:
# the program must still see the press.
tui_keys -l $'\e[<0;17;7M\e[<0;17;7m'
check "click selects a heatmap cell" tui_wait "layer 2  v"
tui_keys -l $'\e[<65;17;7M'
check "wheel scrolls the cursor" tui_wait "layer 3  v"

# Settings: find the temperature row and raise it; the preview must change.
tui_keys 3
check "settings view" tui_wait "widen parameters"
check "preview of WIDEN weights" tui_wait "preview mean"
before=$(tui_screen | grep -o 'preview mean.*' | head -n 1)
header=$(tui_screen | grep -n 'all / global' | head -n 1 | cut -d: -f1)
row=$(tui_screen | grep -n '│ *temperature\|┃ *temperature' | head -n 1 | cut -d: -f1)
if [ -n "$row" ] && [ -n "$header" ]; then
	tui_keys Tab
	for _ in $(seq 1 $((row - header - 1))); do tui_keys j; done
	tui_keys + + + + + + + + + +
	changed=0
	deadline=$(($(date +%s) + 30 * TUI_SCALE))
	while [ "$(date +%s)" -le $deadline ]; do
		after=$(tui_screen | grep -o 'preview mean.*' | head -n 1)
		if [ "$after" != "$before" ] && ! grep -q 're-scoring' <<<"$after"; then
			changed=1
			break
		fi
		sleep 0.05
	done
	check "temperature change re-scores the preview" [ $changed -eq 1 ]
	tui_keys 2 m
	check "heatmap shows the new knobs" tui_wait "T=2"
	# Exclusions (the row after temperature) restart the analysis; an
	# excluded tensor gets weight 0.
	tui_keys 3 j Enter C-u "model.embed_tokens" Enter
	check "exclusion set" tui_wait "model.embed_tokens"
	tui_keys 2 Home
	check "excluded embedding has weight 0" tui_wait "omega     mean 0.0000"
else
	bad "temperature row found in the settings form"
fi

# Save the recipe as YAML and JSON.
tui_keys 3 s C-u "$tmp/recipe.yml" Enter
check "recipe saved as YAML" tui_wait "saved $tmp/recipe.yml"
check "YAML names the method" grep -q "merge_method: widen" "$tmp/recipe.yml"
tui_keys s C-u "$tmp/recipe.json" Enter
check "recipe saved as JSON" tui_wait "saved $tmp/recipe.json"

# Run: valid, merge, output folder complete.
tui_keys 4
check "run view validates" tui_wait "press r to merge" 30
tui_keys r
check "merge completes" tui_wait "merged in" 120
check "output folder has the model" test -s "$tmp/out/model.safetensors"
check "output folder has config.json" test -s "$tmp/out/config.json"
check "no partial folder left" bash -c "! ls -d '$tmp'/out.partial-* 2>/dev/null"
check "summary names the output" tui_wait "output  $tmp/out"

# A second run into the same folder is refused until overwrite is on.
check "existing output is reported" tui_wait "fix in view 4 Run: output folder" 30

tui_keys '?'
check "help overlay" tui_wait "Keys (any key closes)"
tui_keys x
check "help closes" tui_wait_gone "Keys (any key closes)"

tui_keys q
check "quits with status 0" tui_wait "EXIT=0"
check "terminal restored" tui_wait "icanon echo"
check "prints where the merge went" tui_wait "smelt: merged into $tmp/out"

# Reopen with the saved recipe: models, method and knobs come back, and
# the heatmap is the first view.
tui_start 140 45 "cd '$tmp' && TERM=xterm-256color '$SMELT_BIN' tui --recipe '$tmp/recipe.yml' -o '$tmp/out2'"
check "recipe opens on the heatmap" tui_wait "magnitude divergence"
check "recipe models loaded" tui_wait "multilingual"
tui_keys 3
check "recipe knobs loaded" tui_wait "temperature               2"
tui_keys 1 Tab Tab
check "recipe selection" tui_wait "model 2 ✓ $tmp/family/multilingual"
tui_keys 4
check "recipe validates" tui_wait "press r to merge" 30
tui_keys q
check "second session exits cleanly" tui_wait "EXIT=0"

check_summary
