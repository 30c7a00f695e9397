# check.sh: the shell tests' counters (sourced), the shell side of check.h.
# ok and bad count one check and print its line (ok without a description
# counts silently), check runs a command as one check, and check_summary
# prints the closing "N passed, N failed" and fails when any check did.
# Sourcing it twice (a test using two helper libraries) keeps the counts.
if [ -z "${SMELT_CHECK_LOADED:-}" ]; then
	SMELT_CHECK_LOADED=1
	pass=0
	fail=0
fi

ok() {
	pass=$((pass + 1))
	[ $# -eq 0 ] || echo "ok: $*"
}

bad() {
	fail=$((fail + 1))
	echo "FAIL: $*"
}

check() { # DESCRIPTION COMMAND...
	local what=$1

	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}

check_summary() {
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}
