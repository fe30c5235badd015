#!/usr/bin/env bash
# THE test command: sanitizer build, cmocka unit tests, black-box pytest suite, the Node
# real-client test and the browser test of the web client. Its last line is always "N passed, N failed[, N skipped]";
# it exits non-zero when anything failed.
#
# Arguments are passed on to pytest (e.g. scripts/test.sh -k "restart or metrics").
# Env: SAN (default address,undefined), SYNCV3_TEST_BINARY (default build-san/syncv3),
#      SYNCV3_SETUP_FAILED=1 (counted as one failure; set by .ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SAN=${SAN:-address,undefined}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
BUILD=build-san
OUT=$(mktemp -d "${TMPDIR:-/tmp}/syncv3-test.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

passed=0 failed=0 skipped=0
pass() { passed=$((passed + ${1:-1})); }
fail() { failed=$((failed + ${1:-1})); echo "FAILED: $2"; }

if [ "${SYNCV3_SETUP_FAILED:-0}" = 1 ]; then fail 1 "scripts/setup.sh"; fi

echo "== build (SANITIZE=$SAN)"
make -j"$(nproc)" SANITIZE="$SAN" || fail 1 "build"

echo "== unit tests"
units=$(ls tests/unit/test_*.c 2>/dev/null || true)
if [ -n "$units" ]; then
  # Same binaries as `make unit SANITIZE=...`, run one by one so that one crashing binary
  # does not hide the results of the others.
  bins=()
  for src in $units; do b="$BUILD/tests/$(basename "$src" .c)"; bins+=("$b"); done
  make -k -j"$(nproc)" SANITIZE="$SAN" "${bins[@]}" || true
  for b in "${bins[@]}"; do
    if [ ! -x "$b" ]; then fail 1 "$b (did not build)"; continue; fi
    echo "-- $b"
    "$b" >"$OUT/unit.log" 2>&1; rc=$?
    cat "$OUT/unit.log"
    p=$(grep -Eo '\[  PASSED  \] [0-9]+' "$OUT/unit.log" | grep -Eo '[0-9]+$' | awk '{s+=$1} END {print s+0}')
    f=$(grep -Eo '\[  FAILED  \] [0-9]+' "$OUT/unit.log" | grep -Eo '[0-9]+$' | awk '{s+=$1} END {print s+0}')
    p=${p:-0}; f=${f:-0}
    pass "$p"
    if [ "$f" -gt 0 ]; then fail "$f" "$b"; fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then fail 1 "$b (exit status $rc: crash or sanitizer report)"; fi
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$OUT/unit.log" && [ "$rc" -eq 0 ]; then
      fail 1 "$b (sanitizer report)"
    fi
  done
else
  echo "(no unit tests)"
fi

echo "== black-box tests (pytest)"
if [ -d tests/e2e ] && ls tests/e2e/test_*.py >/dev/null 2>&1; then
  SYNCV3_TEST_BINARY="${SYNCV3_TEST_BINARY:-$ROOT/$BUILD/syncv3}" /usr/bin/python3 -m pytest tests/e2e -q -rfE \
    --junitxml="$OUT/pytest.xml" "$@"
  rc=$?
  if [ -f "$OUT/pytest.xml" ]; then
    read -r p f s < <(/usr/bin/python3 - "$OUT/pytest.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f, sk)
PY
)
    pass "$p"; skipped=$((skipped + s))
    if [ "$f" -gt 0 ]; then fail "$f" "pytest"; fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then fail 1 "pytest (exit status $rc)"; fi
  else
    fail 1 "pytest (no report, exit status $rc)"
  fi
fi

# A Node suite's run.sh prints "N passed, N failed[, N skipped]" last; its counts join ours.
node_suite() { # title script
  [ -f "$2" ] || return 0
  local name log last rc np nf ns
  name=$(basename "$(dirname "$2")")
  log="$OUT/$name.log"
  echo "== $1 ($2)"
  bash "$2" 2>&1 | tee "$log"; rc=${PIPESTATUS[0]}
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ -n "$last" ]; then
    np=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
    nf=$(echo "$last" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    ns=$(echo "$last" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    pass "$np"; skipped=$((skipped + ${ns:-0}))
    if [ "$nf" -gt 0 ]; then fail "$nf" "tests/$name"; fi
    if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then fail 1 "tests/$name (exit status $rc)"; fi
  elif [ "$rc" -eq 0 ]; then pass 1; else fail 1 "tests/$name (exit status $rc)"; fi
}
node_suite "real-client test" tests/js/run.sh
node_suite "real-client test, MSC4186 (matrix-js-sdk 37.5)" tests/js-msc4186/run.sh
node_suite "browser test: the web client in Chromium" tests/browser/run.sh

echo "== fuzz (libFuzzer, ${FUZZ_SECS:-15} s per driver; longer: make fuzz-run FUZZ_SECS=600)"
if make -j"$(nproc)" fuzz >"$OUT/fuzz-build.log" 2>&1; then
  for f in build-fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    n=$(basename "$f" | sed 's/^fuzz_//')
    mkdir -p "$OUT/corpus-$n" && cp tests/fuzz/corpus/"$n"/* "$OUT/corpus-$n/" 2>/dev/null
    if "$f" -max_total_time="${FUZZ_SECS:-15}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
         -artifact_prefix="$OUT/" "$OUT/corpus-$n" >"$OUT/fuzz-$n.log" 2>&1; then
      echo "-- $f: $(grep -Eo 'Done [0-9]+ runs' "$OUT/fuzz-$n.log")"
      pass 1
    else
      tail -n 40 "$OUT/fuzz-$n.log"
      fail 1 "$f (a crash, leak or timeout: see the report above)"
    fi
  done
else
  tail -n 30 "$OUT/fuzz-build.log"
  fail 1 "make fuzz"
fi

summary="$passed passed, $failed failed"
if [ "$skipped" -gt 0 ]; then summary="$summary, $skipped skipped"; fi
echo "$summary"
[ "$failed" -eq 0 ]
