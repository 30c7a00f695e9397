#!/usr/bin/env bash
# demo.sh SMELT_BIN DEMO_DIR: `make demo`. Writes the synthetic demo family
# (base, chat, multilingual) and a WIDEN recipe for it, then opens the
# workbench with that recipe preloaded: the heatmap comes up first and shows
# the multilingual model (a large, continual-pretraining-like shift) against
# the chat model (a small fine-tune-like shift) within seconds.
set -eu
bin=${1:?usage: demo.sh SMELT_BIN DEMO_DIR}
dir=${2:?usage: demo.sh SMELT_BIN DEMO_DIR}

if [ ! -x "$bin" ]; then
	echo "demo: $bin is not built (run make build)" >&2
	exit 1
fi
if [ ! -t 0 ] || [ ! -t 1 ]; then
	echo "demo: the workbench needs a terminal; run make demo from one" >&2
	exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
"$bin" demo "$dir" >/dev/null

# yaml_path PATH: PATH as a single-quoted YAML scalar (any folder name).
yaml_path() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

recipe="$dir/widen.yml"
if [ ! -e "$recipe" ]; then
	cat >"$recipe" <<YAML
# WIDEN merge of the demo family (written by make demo; edit freely).
merge_method: widen
base_model: $(yaml_path "$dir/base")
models:
  - model: $(yaml_path "$dir/chat")
  - model: $(yaml_path "$dir/multilingual")
parameters:
  threshold: 1.0
  calibration: 1.0
YAML
fi
exec "$bin" tui --recipe "$recipe" -o "$dir/merged"
