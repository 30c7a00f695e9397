#!/usr/bin/env bash
# demo.sh SMELT_BIN DEMO_DIR: `make demo`. Writes the synthetic demo family
# (base, chat, multilingual) and a WIDEN recipe for it, then opens the
# workbench with that recipe preloaded: the heatmap comes up first and shows
# the multilingual model (a large, continual-pretraining-like shift) against
# the chat model (a small fine-tune-like shift) within seconds.
set -eu
bin=${1:?usage: demo.sh SMELT_BIN DEMO_DIR}
dir=${2:?usage: demo.sh SMELT_BIN DEMO_DIR}

"$bin" demo "$dir" >/dev/null
recipe="$dir/widen.yml"
if [ ! -e "$recipe" ]; then
	cat >"$recipe" <<YAML
# WIDEN merge of the demo family (written by make demo; edit freely).
merge_method: widen
base_model: $dir/base
models:
  - model: $dir/chat
  - model: $dir/multilingual
parameters:
  threshold: 1.0
  calibration: 1.0
YAML
fi
exec "$bin" tui --recipe "$recipe" -o "$dir/merged"
