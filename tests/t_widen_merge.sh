#!/usr/bin/env bash
# t_widen_merge.sh: every WIDEN reference case (testdata/widen) reproduced
# through `smelt merge` with F32 checkpoint folders and out_dtype float32;
# the comparison and the per-case figures are in tests/widen_merge.py.
set -eu

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if python3 "$SMELT_SOURCE/tests/widen_merge.py" "$SMELT_BIN" "$SMELT_SHARED" "$tmp"; then
	exit 0
fi
exit 1
