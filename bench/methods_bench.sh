#!/usr/bin/env bash
# Time of every merge method on the bench family against `cat` of the
# inputs it reads, one timed run each (page cache warm), and peak RssAnon
# from a second, sampled run.
#
#   bench/methods_bench.sh [FAMILY_DIR]      (env: THREADS=2)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${SMELT_SHARED:-$root/../shared}
smelt=${SMELT_BIN:-$root/build/smelt}
family=${1:-/tmp/smelt-bench-family}
threads=${THREADS:-2}
work=$(mktemp -d /tmp/smelt-mbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
. "$here/lib.sh"

ensure_family "$family" "$shared"
warm_files() { cat $files >/dev/null; }
B=$family/base M1=$family/m1 M2=$family/m2

# method | uses base | models | global parameters | per-model parameters
cases="widen|1|2|{}|{}
linear|0|2|{}|{\"weight\": 0.5}
task_arithmetic|1|2|{}|{\"weight\": 0.5}
ties|1|2|{}|{\"weight\": 0.5, \"density\": 0.5}
dare_linear|1|2|{}|{\"weight\": 0.5, \"density\": 0.5}
dare_ties|1|2|{}|{\"weight\": 0.5, \"density\": 0.5}
breadcrumbs|1|2|{}|{\"weight\": 0.5, \"density\": 0.9, \"gamma\": 0.01}
breadcrumbs_ties|1|2|{}|{\"weight\": 0.5, \"density\": 0.9, \"gamma\": 0.01}
della|1|2|{}|{\"weight\": 0.5, \"density\": 0.5, \"epsilon\": 0.1}
della_linear|1|2|{}|{\"weight\": 0.5, \"density\": 0.5, \"epsilon\": 0.1}
slerp|1|1|{\"t\": 0.5}|{}
nuslerp|1|2|{}|{\"weight\": 0.5}
multislerp|1|2|{}|{\"weight\": 0.5}
karcher|0|2|{}|{}
model_stock|1|2|{}|{}
nearswap|1|1|{\"t\": 0.001}|{}
sce|1|2|{\"select_topk\": 0.5}|{}
ram|1|2|{}|{}
ramplus_tl|1|2|{}|{}
arcee_fusion|1|1|{}|{}
passthrough|0|1|{}|{}"

printf '| method | inputs read | smelt s | cat of the inputs s | ratio | peak RssAnon MB |\n|---|---|---|---|---|---|\n'
while IFS='|' read -r m usebase n g p; do
	models="{\"model\": \"$M1\", \"parameters\": $p}"
	files="$M1/model.safetensors"
	[ "$n" = 2 ] && { models="$models, {\"model\": \"$M2\", \"parameters\": $p}"; files="$files $M2/model.safetensors"; }
	base=""
	[ "$usebase" = 1 ] && { base="\"base_model\": \"$B\","; files="$B/model.safetensors $files"; }
	printf '{"merge_method": "%s", %s "models": [%s], "parameters": %s, "seed": 1, "out_dtype": "bfloat16"}\n' \
		"$m" "$base" "$models" "$g" >"$work/r.json"
	cat $files >/dev/null
	c=$( { /usr/bin/time -f %e cat $files >/dev/null; } 2>&1 )
	read -r s mem < <(best_measure 1 warm_files "$work/out" "$smelt" merge "$work/r.json" -o "$work/out" --threads "$threads" --quiet)
	printf '| %s | %d | %.2f | %.2f | %.1fx | %.0f |\n' "$m" "$(echo $files | wc -w)" "$s" "$c" \
		"$(ratio "$s" "$c")" "$(echo "$mem / 1024" | bc -l)"
done <<<"$cases"
