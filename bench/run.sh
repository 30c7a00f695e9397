#!/usr/bin/env bash
# `make bench`: every benchmark, one after the other, on a quiet machine.
# Installs the PyTorch baseline's Debian package when missing (as root).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null
	else
		echo "bench: the baseline needs python3-torch: apt-get install python3-torch" >&2
		exit 1
	fi
fi
export SMELT_BIN=${SMELT_BIN:-$here/../build/smelt}
family=${FAMILY:-/tmp/smelt-bench-family}
echo "## merge (bench/merge_bench.sh)"; bash "$here/merge_bench.sh" "$family"
echo; echo "## every method (bench/methods_bench.sh)"; bash "$here/methods_bench.sh" "$family"
echo; echo "## read (bench/read_bench.sh)"; bash "$here/read_bench.sh" "$family"
echo; echo "## diverge (bench/diverge_bench.sh)"; bash "$here/diverge_bench.sh" "$SMELT_BIN"
echo; echo "## hub (bench/hub_bench.sh)"; bash "$here/hub_bench.sh"
echo; echo "## workbench latency (bench/tui_latency.sh)"; bash "$here/tui_latency.sh"
