#!/usr/bin/env bash
# Merge throughput and memory: smelt against the PyTorch baseline with
# mergekit's per-tensor semantics and against the I/O floor, in one run.
#
#   bench/merge_bench.sh [FAMILY_DIR]      (env: THREADS=2, METHODS="task_arithmetic ties widen")
#
# The family (base + 2 models, bf16, Llama-shaped) is written once by
# ../shared/bench/make_family.py with its defaults (about 0.53 GB per model)
# and reused. The page cache is warmed before every measurement.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${SMELT_SHARED:-$root/../shared}
smelt=${SMELT_BIN:-$root/build/smelt}
family=${1:-/tmp/smelt-bench-family}
threads=${THREADS:-2}
methods=${METHODS:-"task_arithmetic ties widen"}
work=$(mktemp -d /tmp/smelt-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
. "$here/lib.sh"
command -v bc >/dev/null || { echo "bench needs bc (apt-get install bc)" >&2; exit 1; }

if [ ! -f "$family/m2/model.safetensors" ]; then
	echo "writing the bench family into $family" >&2
	/usr/bin/python3 "$shared/bench/make_family.py" "$family" >/dev/null
fi
inputs="$family/base/model.safetensors $family/m1/model.safetensors $family/m2/model.safetensors"
warm() { cat $inputs >/dev/null; }

recipe() { # METHOD FILE
	case $1 in
	task_arithmetic) params='"parameters": {"weight": 0.5}' ; glob='' ;;
	ties) params='"parameters": {"weight": 0.5, "density": 0.5}' ; glob='' ;;
	widen) params='"parameters": {}' ; glob='' ;;
	esac
	cat >"$2" <<JSON
{"merge_method": "$1", "base_model": "$family/base",
 "models": [{"model": "$family/m1", $params}, {"model": "$family/m2", $params}],
 "out_dtype": "bfloat16"}
JSON
}

# I/O floor: read every input once, write the output's bytes once (fsync'd,
# as smelt's writer does). Dirty data from earlier steps is flushed first and
# the best of three runs is kept, since the virtual disk's speed varies.
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
reads=() writes=()
for _ in 1 2 3; do
	warm; sync
	reads+=("$( { /usr/bin/time -f %e cat $inputs >/dev/null; } 2>&1 )")
	writes+=("$( { /usr/bin/time -f %e dd if="$family/base/model.safetensors" of="$work/floor.out" bs=4M conv=fsync status=none; } 2>&1 )")
	rm -f "$work/floor.out"
done
floor_read=$(best "${reads[@]}")
floor_write=$(best "${writes[@]}")
floor=$(echo "$floor_read + $floor_write" | bc -l)

printf '| method | threads | smelt s | torch s | speed-up vs torch | smelt / I/O floor | smelt peak RssAnon MB | torch peak RssAnon MB |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for m in $methods; do
	recipe "$m" "$work/$m.json"
	warm; sync
	read -r st sm < <(measure "$smelt" merge "$work/$m.json" -o "$work/out-$m" --threads "$threads" --quiet)
	rm -rf "$work/out-$m"
	warm; sync
	read -r tt tm < <(measure /usr/bin/python3 "$shared/bench/torch_baseline.py" "$m" "$family/base" "$work/torch-$m.safetensors" "$family/m1" "$family/m2" --threads "$threads")
	rm -f "$work/torch-$m.safetensors"
	printf '| %s | %s | %.2f | %.2f | %.1fx | %.2fx | %.0f | %.0f |\n' "$m" "$threads" "$st" "$tt" \
		"$(ratio "$tt" "$st")" "$(ratio "$st" "$floor")" "$(echo "$sm / 1024" | bc -l)" "$(echo "$tm / 1024" | bc -l)"
done
printf '\nI/O floor: %.2f s (read inputs %.2f s + write output %.2f s)\n' "$floor" "$floor_read" "$floor_write"

# Thread scaling on ties.
recipe ties "$work/ties.json"
warm
read -r t1 _ < <(measure "$smelt" merge "$work/ties.json" -o "$work/o1" --threads 1 --quiet)
warm
read -r t2 _ < <(measure "$smelt" merge "$work/ties.json" -o "$work/o2" --threads 2 --quiet)
printf 'ties: 1 thread %.2f s, 2 threads %.2f s, speed-up %.2fx\n' "$t1" "$t2" "$(ratio "$t1" "$t2")"
cmp -s "$work/o1/model.safetensors" "$work/o2/model.safetensors" && echo "ties output identical for 1 and 2 threads"
