#!/usr/bin/env bash
# t_methods.sh: `smelt methods` lists the registry and explains one method;
# an unknown name fails with a suggestion.
set -eu

. "$SMELT_SOURCE/tests/check.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

expect_in() { # file needle description
	if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' not in output"; fi
}

if "$SMELT_BIN" methods > "$tmp/list" 2> "$tmp/err"; then ok; else bad "smelt methods exited non-zero"; fi
if head -1 "$tmp/list" | grep -q "^0 merge methods"; then
	bad "no method is registered in $SMELT_BIN: its link did not take the method objects" \
		"from the engine archive (the registry refers to them weakly)"
fi
for m in linear task_arithmetic slerp nuslerp multislerp karcher model_stock nearswap \
	arcee_fusion passthrough; do
	expect_in "$tmp/list" "  $m " "list"
done
expect_in "$tmp/list" "normalize=true" "linear's default"
expect_in "$tmp/list" "weight (required) [per model]" "required per-model weight"
expect_in "$tmp/list" "int8_mask=false [no effect]" "unused parameter marker"

if "$SMELT_BIN" methods slerp > "$tmp/slerp" 2>&1; then ok; else bad "smelt methods slerp"; fi
expect_in "$tmp/slerp" "base model:  required" "slerp base"
expect_in "$tmp/slerp" "models:      exactly 1" "slerp model count"
expect_in "$tmp/slerp" "0.9995" "slerp formula"
expect_in "$tmp/slerp" "paper:" "slerp paper"

"$SMELT_BIN" methods nuslerp > "$tmp/nu" 2>&1 || bad "smelt methods nuslerp"
expect_in "$tmp/nu" "per model  required" "nuslerp weight"
expect_in "$tmp/nu" "default true, true/false" "nuslerp_flatten default"

set +e
"$SMELT_BIN" methods dare-ties > "$tmp/out" 2> "$tmp/err"
rc=$?
set -e
if [ "$rc" -eq 1 ]; then ok; else bad "unknown method exit code $rc, want 1"; fi
expect_in "$tmp/err" "did you mean 'dare_ties'?" "suggestion"
if [ -s "$tmp/out" ]; then bad "unknown method wrote to stdout"; else ok; fi

set +e
"$SMELT_BIN" methods zzzzqqqq > /dev/null 2> "$tmp/err"
rc=$?
"$SMELT_BIN" methods a b > /dev/null 2>&1
rc2=$?
set -e
if [ "$rc" -eq 1 ]; then ok; else bad "far unknown name exit $rc"; fi
if grep -q "did you mean" "$tmp/err"; then bad "suggested a method for a far name"; else ok; fi
if [ "$rc2" -eq 2 ]; then ok; else bad "two names exit $rc2, want 2"; fi

check_summary
