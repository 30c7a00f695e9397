#!/usr/bin/env bash
# t_tui_tiers.sh: the workbench degrades cleanly: 8 colours (TERM=xterm),
# NO_COLOR, truecolor (xterm-direct), ASCII when the locale is not UTF-8;
# themes by name; a too-small terminal; bad options.
set -eu
. "$(dirname "$0")/tui_lib.bash"
tui_require_methods

tmp=$(mktemp -d)
trap 'tui_cleanup; rm -rf "$tmp"' EXIT
fam=$(tui_family)
export XDG_CACHE_HOME="$tmp/cache" HF_HUB_CACHE="$tmp/hf"
args="-o '$tmp/out' '$fam/base' '$fam/ft' '$fam/pt'"

# run_tier NAME ENV EXPECT: open on the heatmap, wait for the tier name in
# the top bar and for the analysis to finish, walk the modes, quit.
run_tier() {
	local name=$1 env=$2 expect=$3
	tui_start 120 40 "env $env '$SMELT_BIN' tui $args"
	check "$name: tier shown" tui_wait "$expect"
	check "$name: heatmap" tui_wait "magnitude divergence"
	check "$name: analysis done" tui_wait_gone "computing" 60
	tui_keys m m j
	check "$name: weight mode" tui_wait "WIDEN weight"
	tui_keys q
	check "$name: clean exit" tui_wait "EXIT=0"
}

run_tier "xterm 8 colours" "TERM=xterm LANG=C.UTF-8" "8 colours"
run_tier "NO_COLOR" "TERM=xterm-256color NO_COLOR=1 LANG=C.UTF-8" "mono"
if infocmp xterm-direct >/dev/null 2>&1; then
	run_tier "truecolor" "TERM=xterm-direct LANG=C.UTF-8" "truecolor"
else
	echo "skip truecolor: no xterm-direct terminfo (apt-get install ncurses-term)"
fi
run_tier "256 colours" "TERM=xterm-256color LANG=C.UTF-8" "256 colours"

# Shade glyphs in 8 colours; half blocks in 256.
tui_start 120 40 "env TERM=xterm LANG=C.UTF-8 '$SMELT_BIN' tui $args"
tui_wait_gone "computing" 60 >/dev/null || true
check "8 colours use shade glyphs" tui_wait "▓"
tui_keys q
tui_wait "EXIT=0" >/dev/null || true
tui_start 120 40 "env TERM=xterm-256color LANG=C.UTF-8 '$SMELT_BIN' tui $args"
tui_wait_gone "computing" 60 >/dev/null || true
check "256 colours use half blocks" tui_wait "▀"
tui_keys q
tui_wait "EXIT=0" >/dev/null || true

# ASCII when the locale is not UTF-8.
tui_start 120 40 "env TERM=xterm-256color LANG=C LC_ALL=C '$SMELT_BIN' tui $args"
check "ASCII: heatmap" tui_wait "magnitude divergence"
tui_wait_gone "computing" 60 >/dev/null || true
check "ASCII: box drawn with +-" tui_wait "+-"
no_line_glyphs() { ! tui_screen | grep -q '│'; }
check "ASCII: no line-drawing glyphs" no_line_glyphs
tui_keys q
check "ASCII: clean exit" tui_wait "EXIT=0"

# Themes: by name, from the user folder, unknown names refused.
tui_start 120 40 "env TERM=xterm-256color '$SMELT_BIN' tui --theme light $args"
check "light theme opens" tui_wait "magnitude divergence"
tui_keys q
check "light theme exits" tui_wait "EXIT=0"
mkdir -p "$tmp/config/smelt/themes"
echo '{"name":"mine","accent":"#ff0000"}' >"$tmp/config/smelt/themes/mine.json"
tui_start 120 40 "env XDG_CONFIG_HOME='$tmp/config' SMELT_THEME=mine TERM=xterm-256color '$SMELT_BIN' tui $args"
check "user theme via SMELT_THEME" tui_wait "magnitude divergence"
tui_keys q
check "user theme exits" tui_wait "EXIT=0"
tui_start 120 40 "'$SMELT_BIN' tui --theme no-such-theme"
check "unknown theme refused" tui_wait "theme 'no-such-theme' not found"
check "unknown theme exit status 2" tui_wait "EXIT=2"

# Too small, then resized to fit.
tui_start 60 14 "env TERM=xterm-256color '$SMELT_BIN' tui $args"
check "too-small terminal says so" tui_wait "terminal too small"
tui_resize 120 40
check "resize redraws the view" tui_wait "magnitude divergence"
tui_resize 80 24
check "80x24 narrows the heatmap cells" tui_wait "ga up dn nm   q  k"
tui_keys q
check "exit after resize" tui_wait "EXIT=0"

# A recipe that does not load is reported before the screen opens.
printf 'merge_method: widen\nmodels: [\n' >"$tmp/bad.yml"
tui_start 120 40 "'$SMELT_BIN' tui --recipe '$tmp/bad.yml'"
check "bad recipe reported" tui_wait "bad.yml"
check "bad recipe exit status 1" tui_wait "EXIT=1"

# A model that does not fit the base: the checkpoints view says why before
# anything runs, the Run view lists every problem with where to fix it,
# and the vocabulary policy is set from the Run view.
"$SMELT_BIN" demo "$tmp/demo" >/dev/null
tui_start 120 40 "env TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/mm' '$tmp/demo/base' '$fam/ft'"
tui_keys 1 Tab Tab j
check "mismatch: vocabulary named" tui_wait "vocabulary differs (256 vs 512)"
check "mismatch: shapes counted" tui_wait "12 shape mismatches"
tui_keys 4
check "mismatch: vocabulary error points to the Run view" tui_wait "fix in view 4 Run: vocabulary"
check "mismatch: shape errors point to the checkpoints" tui_wait "fix in view 1 Checkpoints"
tui_keys j j j j j Enter
check "mismatch: vocabulary policy set" tui_wait "vocabulary      common"
check "mismatch: vocabulary error gone" tui_wait_gone "fix in view 4 Run: vocabulary"
tui_keys q
check "mismatch: clean exit" tui_wait "EXIT=0"

# A classic method: the form comes from its parameter table, per-model
# values get one column per model, a missing required weight is reported
# with where to fix it, and setting it per model makes the recipe valid.
tui_start 140 40 "env TERM=xterm-256color '$SMELT_BIN' tui -o '$tmp/ties' '$fam/base' '$fam/ft' '$fam/pt'"
tui_wait "magnitude divergence" >/dev/null || true
tui_keys 3 j j j Enter
check "ties: form from the method table" tui_wait "ties parameters"
check "ties: per-model parameter marked" tui_wait "weight *"
check "ties: global parameter listed" tui_wait "lambda"
tui_keys 4
check "ties: missing weight points to the settings" tui_wait "fix in view 3 Settings" 30
# weight is the first row: the ft column, then the pt column.
tui_keys 3 l Enter C-u 0.7 Enter l Enter C-u 0.3 Enter
check "ties: per-model weights shown" tui_wait "0.3"
tui_keys 4
check "ties: valid once weighted" tui_wait "press r to merge" 30
tui_keys r
check "ties: merge completes" tui_wait "merged in" 60
check "ties: output written" test -s "$tmp/ties/model.safetensors"
tui_keys q
check "ties: clean exit" tui_wait "EXIT=0"

# `smelt` alone (options but no subcommand) opens the workbench too.
tui_start 120 40 "cd '$tmp' && env TERM=xterm-256color '$SMELT_BIN' --theme viridis -o '$tmp/o3'"
check "plain smelt opens the workbench" tui_wait "Local folders"
tui_keys 4
check "plain smelt takes -o" tui_wait "$tmp/o3"
tui_keys q
check "plain smelt exits" tui_wait "EXIT=0"

# Options and non-terminals.
check "--help prints usage" bash -c "'$SMELT_BIN' tui --help | grep -q 'usage: smelt tui'"
check "unknown option is a usage error" bash -c "'$SMELT_BIN' tui --bogus </dev/null >/dev/null 2>&1; [ \$? -eq 2 ]"
check "no terminal is refused" bash -c "'$SMELT_BIN' tui </dev/null 2>&1 | grep -q 'needs a terminal'"

check_summary
