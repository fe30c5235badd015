#!/usr/bin/env bash
# Real-client test: matrix-js-sdk's SlidingSync (tests/js/*.test.mjs, node --test) against syncv3,
# a throwaway PostgreSQL (tests/e2e/pgtmp.py) and the scripted fake homeserver
# (tests/js/scenario.py). Everything started here is stopped on exit, also on failure.
#
# Last line: "N passed, N failed[, N skipped]" (parsed by scripts/test.sh); non-zero exit on
# any failure. syncv3 exiting non-zero on SIGTERM or printing a sanitizer report counts as a
# failure.
#
# The same stack runs the browser test (tests/browser/run.sh sets SYNCV3_NODE_SUITE).
#
# Env: SYNCV3_NODE_SUITE    folder whose *.test.mjs run (default tests/js; its node_modules
#                           come from npm ci there)
#      SYNCV3_TEST_BINARY   binary (default build-san/syncv3 if present, else build/syncv3;
#                           relative paths are taken from the repository root)
#      SYNCV3_TEST_LOG_LEVEL syncv3's SYNCV3_LOG_LEVEL (default debug)
#      SYNCV3_JS_KEEP=1      keep the work dir (logs, HTTP capture) and print its path
#      SYNCV3_JS_DEBUG=1     matrix-js-sdk debug logging
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SUITE=$(cd "${SYNCV3_NODE_SUITE:-$HERE}" && pwd)
NAME="tests/$(basename "$SUITE")"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

BIN=${SYNCV3_TEST_BINARY:-}
if [ -z "$BIN" ]; then
  if [ -x "$ROOT/build-san/syncv3" ]; then BIN=$ROOT/build-san/syncv3; else BIN=$ROOT/build/syncv3; fi
fi
case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/syncv3-$(basename "$SUITE").XXXXXX")
chmod 755 "$WORK" # the postgres user (when we are root) must reach $WORK/pg
SCEN_PID="" PROXY_PID="" NODE_JOB="" PG_STARTED=0
extra_failures=0

summary() { # passed failed skipped
  local s="$1 passed, $2 failed"
  if [ "${3:-0}" -gt 0 ]; then s="$s, $3 skipped"; fi
  echo "$s"
}

stop_pid() { # pid [seconds] -> exit status of the process (or 255 if it had to be killed)
  local pid=$1 secs=${2:-20} i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null
    return 255
  fi
  wait "$pid" 2>/dev/null
}

cleanup() {
  if [ -n "$NODE_JOB" ]; then
    # "timeout" (the pid in node.pid) passes the TERM on to node
    if [ -s "$WORK/node.pid" ]; then kill -TERM "$(cat "$WORK/node.pid")" 2>/dev/null || true; fi
    wait "$NODE_JOB" 2>/dev/null || true
    NODE_JOB=""
  fi
  if [ -n "$PROXY_PID" ]; then stop_pid "$PROXY_PID" 5 || true; PROXY_PID=""; fi
  if [ -n "$SCEN_PID" ]; then stop_pid "$SCEN_PID" 5 || true; SCEN_PID=""; fi
  if [ "$PG_STARTED" = 1 ]; then "$PY" "$ROOT/tests/e2e/pgtmp.py" stop "$WORK/pg" >/dev/null 2>&1 || true; fi
  if [ "${SYNCV3_JS_KEEP:-0}" = 1 ]; then
    echo "$NAME: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

abort() { # message -> prints logs, counts one failure, exits
  echo "$NAME: $*" >&2
  show_logs
  summary 0 1
  exit 1
}

show_logs() {
  for f in "$WORK/scenario.log" "$WORK/syncv3.stderr"; do
    [ -s "$f" ] || continue
    echo "---- tail of $(basename "$f")" >&2
    tail -n 60 "$f" >&2
  done
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

command -v node >/dev/null 2>&1 || abort "node is not installed (scripts/setup.sh)"
[ -x "$BIN" ] || abort "syncv3 binary not found at $BIN (build it with make)"
if [ ! -f "$SUITE/node_modules/.package-lock.json" ]; then
  echo "$NAME: node_modules missing, running npm ci" >&2
  (cd "$SUITE" && npm ci --no-audit --no-fund) >&2 || abort "npm ci failed"
fi

# (a) PostgreSQL
mkdir -p "$WORK/pg"
PG_STARTED=1
"$PY" "$ROOT/tests/e2e/pgtmp.py" start "$WORK/pg" >"$WORK/pg.out" 2>&1 || { cat "$WORK/pg.out" >&2; abort "PostgreSQL did not start"; }
DB=$("$PY" "$ROOT/tests/e2e/pgtmp.py" createdb "$WORK/pg" syncv3_js 2>"$WORK/pg.err") || { cat "$WORK/pg.err" >&2; abort "createdb failed"; }

# (b) fake homeserver + control API
"$PY" "$HERE/scenario.py" --info "$WORK/scenario.json" >"$WORK/scenario.log" 2>&1 &
SCEN_PID=$!
for ((i = 0; i < 300; i++)); do
  [ -s "$WORK/scenario.json" ] && break
  kill -0 "$SCEN_PID" 2>/dev/null || abort "the fake homeserver exited during start-up"
  sleep 0.1
done
[ -s "$WORK/scenario.json" ] || abort "the fake homeserver did not start"
read -r HS_URL CONTROL_URL < <("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["hs_url"], d["control_url"])' "$WORK/scenario.json")

# (c) syncv3
PORT=$(free_port)
PROXY_URL="http://127.0.0.1:$PORT"
unset_syncv3=()
for v in $(compgen -e | grep '^SYNCV3_' || true); do unset_syncv3+=(-u "$v"); done
LSAN=""
if [ -f "$ROOT/tests/e2e/lsan.supp" ]; then LSAN="suppressions=$ROOT/tests/e2e/lsan.supp:print_suppressions=0"; fi
(
  cd "$WORK" &&
  exec env "${unset_syncv3[@]}" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    LSAN_OPTIONS="${LSAN_OPTIONS:-$LSAN}" \
    SYNCV3_SERVER="$HS_URL" SYNCV3_DB="$DB" \
    SYNCV3_SECRET="js-test-secret-0123456789abcdef0123456789abcdef" \
    SYNCV3_BINDADDR="127.0.0.1:$PORT" \
    SYNCV3_LOG_LEVEL="${SYNCV3_TEST_LOG_LEVEL:-debug}" \
    "$BIN"
) >"$WORK/syncv3.stdout" 2>"$WORK/syncv3.stderr" </dev/null &
PROXY_PID=$!
for ((i = 0; i < 300; i++)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$PROXY_PID" 2>/dev/null || abort "syncv3 exited during start-up"
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || abort "syncv3 did not listen on port $PORT within 30 s"

# the Node test(s). --test-force-exit: matrix-js-sdk arms a timer per request (the request's
# client-side timeout) that it never clears; without it node would wait for the last one.
echo "$NAME: $(basename "$BIN") on $PROXY_URL, fake homeserver on $HS_URL"
# It runs in the background so that a SIGINT/SIGTERM of this script is handled at once.
{
  (
    cd "$SUITE" && echo "$BASHPID" >"$WORK/node.pid" &&
    SYNCV3_PROXY_URL="$PROXY_URL" SYNCV3_HS_URL="$HS_URL" SYNCV3_CONTROL_URL="$CONTROL_URL" SYNCV3_JS_CAPTURE="$WORK/http-capture.jsonl" \
      SYNCV3_TEST_WORK="$WORK" \
      exec timeout -k 10 600 node --test --test-force-exit --test-timeout=120000 --test-reporter=spec ./*.test.mjs
  ) 2>&1 </dev/null | tee "$WORK/node.out"
} &
NODE_JOB=$!
wait "$NODE_JOB"; node_rc=$? # pipefail: node's status (tee's when only tee failed)
NODE_JOB=""

# the spec reporter's summary ("ℹ pass 3" ...; the tap reporter's file is cut short by
# --test-force-exit)
count() { grep -aE "^[^ ]+ $1 [0-9]+\$" "$WORK/node.out" 2>/dev/null | tail -1 | awk '{print $3}'; }
passed=$(count pass) failed=$(count fail) skipped=$(count skipped) cancelled=$(count cancelled)
passed=${passed:-0} failed=${failed:-0} skipped=${skipped:-0} cancelled=${cancelled:-0}
failed=$((failed + cancelled))
if [ "$node_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "$NAME: node --test exited with status $node_rc" >&2
  failed=1
fi

# syncv3 must shut down cleanly and without sanitizer reports
stop_pid "$PROXY_PID" 20; proxy_rc=$?
PROXY_PID=""
if [ "$proxy_rc" -eq 255 ]; then
  echo "$NAME: syncv3 did not exit within 20 s of SIGTERM" >&2; extra_failures=$((extra_failures + 1))
elif [ "$proxy_rc" -ne 0 ]; then
  echo "$NAME: syncv3 exited with status $proxy_rc on SIGTERM" >&2; extra_failures=$((extra_failures + 1))
fi
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: AddressSanitizer|AddressSanitizer:DEADLYSIGNAL|UndefinedBehaviorSanitizer|runtime error:|WARNING: ThreadSanitizer' "$WORK/syncv3.stderr"; then
  echo "$NAME: sanitizer report in syncv3's stderr:" >&2
  grep -nE -A40 'ERROR: (AddressSanitizer|LeakSanitizer)|AddressSanitizer:DEADLYSIGNAL|UndefinedBehaviorSanitizer|runtime error:|WARNING: ThreadSanitizer' "$WORK/syncv3.stderr" | head -80 >&2
  extra_failures=$((extra_failures + 1))
fi
failed=$((failed + extra_failures))

if [ "$failed" -gt 0 ]; then
  if [ -s "$WORK/http-capture.jsonl" ]; then
    echo "---- client<->proxy HTTP exchanges (last 10 of $(wc -l <"$WORK/http-capture.jsonl"))" >&2
    tail -n 10 "$WORK/http-capture.jsonl" >&2
  fi
  echo "---- requests syncv3 made to the fake homeserver" >&2
  "$PY" -c 'import json, sys, urllib.request
for r in json.load(urllib.request.urlopen(sys.argv[1] + "/requests", timeout=10)): print(json.dumps(r))' \
    "$CONTROL_URL" >&2 || true
  show_logs
fi
summary "$passed" "$failed" "$skipped"
[ "$failed" -eq 0 ]
