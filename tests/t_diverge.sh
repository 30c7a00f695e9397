#!/bin/bash
# t_diverge.sh: `smelt diverge` end to end: the demo family (or the tiny
# trained family) shows the continually pre-trained / multilingual model
# diverging clearly more than the fine-tuned / chat one; JSON and CSV
# shapes; the cache makes the second run a cache hit with identical
# numbers; knobs re-score; usage and input errors.
set -eu

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache"
. "$SMELT_SOURCE/tests/check.sh"

fam=$SMELT_SHARED/testdata/tiny-family
small=$fam/ft
large=$fam/pt
base=$fam/base
if "$SMELT_BIN" demo "$tmp/demo" >/dev/null 2>&1 && [ -d "$tmp/demo/multilingual" ]; then
	echo "# using the demo family"
	base=$tmp/demo/base
	small=$tmp/demo/chat
	large=$tmp/demo/multilingual
fi

# field NAME FILE: print a value from a diverge JSON with python3's json
field() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[2])); print(eval(sys.argv[1], {"d": d}))' "$1" "$2"
}

# The trained tiny family is always checked too: its fine-tune moved less
# than its continued pre-training, in most cells of the grid.
"$SMELT_BIN" diverge --base "$fam/base" "$fam/ft" "$fam/pt" --json --quiet --no-cache >"$tmp/t.json"
check "tiny family: pt diverges > 1.5x ft (magnitude)" \
	[ "$(field 'd["totals"][1]["magnitude_mean"] > 1.5 * d["totals"][0]["magnitude_mean"]' "$tmp/t.json")" = True ]
check "tiny family: pt diverges > 1.5x ft (direction)" \
	[ "$(field 'd["totals"][1]["direction_mean"] > 1.5 * d["totals"][0]["direction_mean"]' "$tmp/t.json")" = True ]

"$SMELT_BIN" diverge --base "$base" "$small" "$large" --json --quiet >"$tmp/a.json"
check "json format tag" [ "$(field 'd["format"]' "$tmp/a.json")" = smelt-diverge-v1 ]
check "first run reads weights" [ "$(field 'd["from_cache"]' "$tmp/a.json")" = False ]
check "large shift: magnitude divergence > 1.5x" \
	[ "$(field 'd["totals"][1]["magnitude_mean"] > 1.5 * d["totals"][0]["magnitude_mean"]' "$tmp/a.json")" = True ]
check "large shift: direction divergence > 1.5x" \
	[ "$(field 'd["totals"][1]["direction_mean"] > 1.5 * d["totals"][0]["direction_mean"]' "$tmp/a.json")" = True ]
check "large shift in most grid cells" \
	[ "$(field 'sum(c["models"][1]["magnitude"]["mean"] > c["models"][0]["magnitude"]["mean"] for c in d["grid"]) >= 0.8 * len(d["grid"])' "$tmp/a.json")" = True ]
check "grid has every layer x kind of a Llama" \
	[ "$(field 'len({(c["layer"], c["kind"]) for c in d["grid"] if c["layer"] >= 0}) == 8 * d["layers"]' "$tmp/a.json")" = True ]
check "embedding is transposed, head is not" \
	[ "$(field 'sorted((t["kind"], t["branch"]) for t in d["tensors"] if t["kind"] in ("embed", "head"))' "$tmp/a.json")" = "[('embed', 'matrix_transposed'), ('head', 'matrix')]" ]
check "default knobs: half the columns calibrated" \
	[ "$(field 'all(abs(c["models"][0]["weights"]["frac_cal_mag"] - 0.5) < 0.01 for c in d["grid"] if c["kind"] in ("q", "down"))' "$tmp/a.json")" = True ]

"$SMELT_BIN" diverge --base "$base" "$small" "$large" --json --quiet --threads 1 >"$tmp/b.json"
check "second run is a cache hit" [ "$(field 'd["from_cache"]' "$tmp/b.json")" = True ]
check "cache hit gives identical numbers" \
	python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(0 if (a["tensors"],a["grid"])==(b["tensors"],b["grid"]) else 1)' "$tmp/a.json" "$tmp/b.json"
check "cache file under XDG_CACHE_HOME" [ -n "$(ls "$XDG_CACHE_HOME"/smelt/stats/*.stats)" ]

"$SMELT_BIN" diverge --base "$base" "$small" "$large" --json --quiet --no-cache --threshold -1 --calibration 0.5 >"$tmp/c.json"
check "--no-cache reads weights" [ "$(field 'd["from_cache"]' "$tmp/c.json")" = False ]
check "threshold < 0: every weight is the calibration value" \
	[ "$(field 'all(abs(t["mean_omega"] - 0.5) < 1e-9 for t in d["totals"])' "$tmp/c.json")" = True ]
check "same divergences whatever the knobs" \
	python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(0 if a["totals"][1]["magnitude_mean"]==b["totals"][1]["magnitude_mean"] else 1)' "$tmp/a.json" "$tmp/c.json"

"$SMELT_BIN" diverge --base "$base" "$small" "$large" --json --quiet --exclude 'lm_head' --above-average-value-ratio 1.0 >"$tmp/d.json"
check "excluded tensors get weight 0" \
	[ "$(field '[t["models"][0]["weights"]["mean"] for t in d["tensors"] if t["excluded"]]' "$tmp/d.json")" = "[0]" ]

"$SMELT_BIN" diverge --base "$base" "$small" "$large" --csv --quiet >"$tmp/e.csv"
ntensors=$(field 'len(d["tensors"])' "$tmp/a.json")
check "csv: header + one line per tensor and model" [ "$(wc -l <"$tmp/e.csv")" -eq $((1 + 2 * ntensors)) ]
check "csv header" grep -q '^tensor,layer,kind,branch,model,columns,mag_mean' "$tmp/e.csv"

"$SMELT_BIN" diverge --base "$base" "$small" "$large" --quiet >"$tmp/f.txt"
check "text report names both models" [ "$(grep -c '^model [12]:' "$tmp/f.txt")" -eq 2 ]

set +e
"$SMELT_BIN" diverge "$small" >/dev/null 2>"$tmp/err"
rc=$?
set -e
check "missing --base is a usage error" [ "$rc" -eq 2 ]
set +e
"$SMELT_BIN" diverge --base "$tmp/nope" "$small" >/dev/null 2>"$tmp/err"
rc=$?
set -e
check "missing base folder fails with a message" [ "$rc" -eq 1 -a -s "$tmp/err" ]
set +e
"$SMELT_BIN" diverge --base "$base" "$small" --temperature 0 >/dev/null 2>"$tmp/err"
rc=$?
set -e
check "temperature 0 is refused" [ "$rc" -ne 0 ] && grep -q temperature "$tmp/err"
check "--help" sh -c '"$1" diverge --help >/dev/null' sh "$SMELT_BIN"

check_summary
