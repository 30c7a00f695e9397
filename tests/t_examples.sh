#!/usr/bin/env bash
# t_examples.sh: every recipe under examples/ merges the demo family (written
# by `smelt demo demo`, the recipes name `./demo/base` etc. relative to the
# current directory), the output has the expected number of layers (config.json
# and `smelt inspect --json`), every tensor is finite, and --dry-run shows the
# resolved per-layer gradient values.
set -eu

. "$SMELT_SOURCE/tests/check.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ex="$SMELT_SOURCE/examples"
cd "$tmp"
"$SMELT_BIN" demo demo > /dev/null 2>&1 || { echo "FAIL: smelt demo"; echo "0 passed, 1 failed"; exit 1; }

# expected_layers FILE: 12 for the frankenmerge (6 + 6 layers), 8 otherwise
expected_layers() {
	case "$1" in
	passthrough-frankenmerge.yml) echo 12 ;;
	*) echo 8 ;;
	esac
}

# The merges run side by side: most of their time is spent waiting for fsync.
n=0
for recipe in "$ex"/*.yml "$ex"/*.json; do
	name=$(basename "$recipe")
	n=$((n + 1))
	("$SMELT_BIN" merge "$recipe" -o "out-$name" --quiet > "log-$name" 2>&1; echo $? > "rc-$name") &
done
wait

for recipe in "$ex"/*.yml "$ex"/*.json; do
	name=$(basename "$recipe")
	out="out-$name"
	if [ "$(cat "rc-$name")" != 0 ]; then
		bad "$name: smelt merge failed: $(tail -3 "log-$name")"
		continue
	fi
	ok
	if grep -q "warning" "log-$name"; then bad "$name: warnings: $(grep warning "log-$name")"; else ok; fi
	want=$(expected_layers "$name")
	cfg=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$out/config.json")
	if [ "$cfg" = "$want" ]; then ok; else bad "$name: config.json num_hidden_layers $cfg, want $want"; fi
	inspected=$("$SMELT_BIN" inspect --json "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_layers"])')
	if [ "$inspected" = "$want" ]; then ok; else bad "$name: inspect num_layers $inspected, want $want"; fi
	if python3 "$SMELT_SOURCE/tests/st_check.py" "$out" > "$tmp/finite"; then ok; else bad "$name: $(cat "$tmp/finite")"; fi
done
if [ "$n" -ge 9 ]; then ok; else bad "only $n example recipes found"; fi

# expect_line DRYRUN TENSOR VALUE: the dry-run line of TENSOR ends with VALUE
expect_line() {
	if grep -E "^$2 " "$1" | grep -qE -- "$3\$"; then ok; else
		bad "dry-run: '$2' does not end with '$3': $(grep -E "^$2 " "$1" || echo missing)"
	fi
}

"$SMELT_BIN" merge "$ex/slerp-gradient.yml" -o dry --dry-run > "$tmp/slerp" 2>&1 || bad "slerp --dry-run"
expect_line "$tmp/slerp" model.layers.0.self_attn.q_proj.weight "slerp t=0"
expect_line "$tmp/slerp" model.layers.0.mlp.up_proj.weight "slerp t=1"
expect_line "$tmp/slerp" model.layers.1.self_attn.q_proj.weight "slerp t=0.285714"
expect_line "$tmp/slerp" model.layers.7.self_attn.q_proj.weight "slerp t=1"
expect_line "$tmp/slerp" model.layers.7.mlp.up_proj.weight "slerp t=0"
expect_line "$tmp/slerp" model.layers.7.input_layernorm.weight "slerp t=0.5"
if [ -e dry ]; then bad "--dry-run wrote an output folder"; else ok; fi

"$SMELT_BIN" merge "$ex/ties-density-gradient.yml" -o dry --dry-run > "$tmp/ties" 2>&1 || bad "ties --dry-run"
expect_line "$tmp/ties" model.layers.0.self_attn.q_proj.weight "density=\[1,0.1\] lambda=1 normalize=1 rescale=0"
expect_line "$tmp/ties" model.layers.7.self_attn.q_proj.weight "density=\[0.1,0.9\] lambda=1 normalize=1 rescale=0"

"$SMELT_BIN" merge "$ex/passthrough-frankenmerge.yml" -o dry --dry-run > "$tmp/pt" 2>&1 || bad "passthrough --dry-run"
if grep -q "12 layers" "$tmp/pt"; then ok; else bad "passthrough --dry-run does not announce 12 layers"; fi

check_summary
