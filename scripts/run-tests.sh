#!/usr/bin/env bash
# The whole suite: the release build, the ASan+UBSan build, and a short fuzz
# run when clang is present. Ends with one "N passed, N failed" line that
# counts every ctest test of both builds plus the fuzz run.
set -u
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
passed=0
failed=0

count_ctest() { # LOG
  local line total fails
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -n 1)
  if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
  fails=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  passed=$((passed + total - fails))
  failed=$((failed + fails))
}

run_suite() { # BUILD_DIR LABEL CMAKE_ARGS...
  local dir=$1 label=$2
  shift 2
  echo "== $label build ($dir)"
  if ! cmake -S . -B "$dir" "$@" >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"; failed=$((failed + 1)); return
  fi
  if ! cmake --build "$dir" -j "$JOBS" >"$dir.build.log" 2>&1; then
    tail -n 60 "$dir.build.log"; failed=$((failed + 1)); return
  fi
  echo "== $label tests"
  (cd "$dir" && ctest -j "$JOBS" --output-on-failure) 2>&1 | tee "$dir.ctest.log"
  count_ctest "$dir.ctest.log"
}

mkdir -p build build-asan
run_suite build release -DCMAKE_BUILD_TYPE=Release
run_suite build-asan "asan+ubsan" -DCMAKE_BUILD_TYPE=Debug -DSMELT_SANITIZE=ON

if command -v clang >/dev/null 2>&1 && [ -d tests/fuzz ]; then
  echo "== fuzz (${FUZZ_SECONDS}s per target)"
  mkdir -p build-fuzz
  if CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSMELT_FUZZ=ON \
        -DSMELT_TESTS=ON >build-fuzz.configure.log 2>&1 &&
     cmake --build build-fuzz -j "$JOBS" --target fuzz_targets >build-fuzz.build.log 2>&1; then
    for target in build-fuzz/tests/fuzz_*; do
      [ -x "$target" ] || continue
      name=$(basename "$target")
      corpus=tests/fuzz/corpus/${name#fuzz_}
      work=$(mktemp -d)
      cp -r "$corpus"/. "$work"/ 2>/dev/null || true
      if "$target" -max_total_time="$FUZZ_SECONDS" -max_len=4096 "$work" >"build-fuzz/$name.log" 2>&1; then
        echo "fuzz $name: ok ($(grep -c . "build-fuzz/$name.log") log lines)"
        passed=$((passed + 1))
      else
        echo "fuzz $name: FAILED"; tail -n 40 "build-fuzz/$name.log"
        failed=$((failed + 1))
      fi
      rm -rf "$work"
    done
  else
    tail -n 40 build-fuzz.build.log build-fuzz.configure.log 2>/dev/null
    failed=$((failed + 1))
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
