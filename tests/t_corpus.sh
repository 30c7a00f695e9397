#!/usr/bin/env bash
# t_corpus.sh: the 50 published mergekit recipes of testdata/mergekit-recipes
# merged end to end on tiny local Llama-shaped checkpoints (hidden 16, bf16),
# each checked against its index.json mergekit_status; see tests/corpus_merge.py.
set -eu

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if python3 "$SMELT_SOURCE/tests/corpus_merge.py" "$SMELT_BIN" "$SMELT_SHARED" "$tmp"; then
	exit 0
fi
exit 1
