#!/usr/bin/env bash
# Read throughput: `cat` of the safetensors files (the page-cache floor)
# against converting every tensor to f32 through smelt_ckpt_read_rows on
# 2 threads (bench/read_bench.c, linked against the engine library).
#
#   bench/read_bench.sh [FAMILY_DIR]     (env: THREADS=2, RUNS=3, BUILD=build)
#
# The family (base + 2 models, bf16, Llama-shaped, about 0.53 GB each) is
# written once by ../shared/bench/make_family.py with its defaults and
# reused. Files are read once to warm the page cache; each figure is the
# best of RUNS runs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${SMELT_SHARED:-$root/../shared}
build=${BUILD:-$root/build}
family=${1:-/tmp/smelt-bench-family}
threads=${THREADS:-2}
runs=${RUNS:-3}
work=$(mktemp -d /tmp/smelt-read-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
. "$here/lib.sh"

if [ ! -f "$build/libsmelt_engine.a" ]; then
	cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target smelt_engine -j "$threads" >/dev/null
# shellcheck disable=SC2046
gcc -std=c11 -O2 -D_GNU_SOURCE -I"$root/include" "$here/read_bench.c" "$build/libsmelt_engine.a" \
	$(pkg-config --libs libcjson yaml-0.1 libcurl libcrypto openblas) -lpthread -lm \
	-o "$work/read_bench"

ensure_family "$family" "$shared"
models="$family/base $family/m1 $family/m2"
files="$family/base/model.safetensors $family/m1/model.safetensors $family/m2/model.safetensors"
# shellcheck disable=SC2086
bytes=$(cat $files | wc -c)
cat $files >/dev/null # warm the page cache

best_cat=
for _ in $(seq "$runs"); do
	start=$(date +%s.%N)
	# shellcheck disable=SC2086
	cat $files >/dev/null
	end=$(date +%s.%N)
	t=$(echo "$end - $start" | bc -l)
	if [ -z "$best_cat" ] || [ "$(echo "$t < $best_cat" | bc -l)" = 1 ]; then best_cat=$t; fi
done

best_conv=
for _ in $(seq "$runs"); do
	# shellcheck disable=SC2086
	t=$("$work/read_bench" -t "$threads" $models 2>/dev/null | cut -d' ' -f1)
	if [ -z "$best_conv" ] || [ "$(echo "$t < $best_conv" | bc -l)" = 1 ]; then best_conv=$t; fi
done

cat_gbs=$(echo "scale=3; $bytes / $best_cat / 1000000000" | bc -l)
conv_gbs=$(echo "scale=3; $bytes / $best_conv / 1000000000" | bc -l)
echo "files:            3 models, $bytes bytes (bf16)"
echo "cat > /dev/null:  ${best_cat}s  ${cat_gbs} GB/s"
echo "read_rows -> f32: ${best_conv}s  ${conv_gbs} GB/s ($threads threads)"
echo "ratio (convert / cat throughput): $(echo "scale=2; $conv_gbs / $cat_gbs" | bc -l)"
