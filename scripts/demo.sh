#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL, the fake homeserver with sample users/rooms and a
# message every few seconds, and syncv3 on 127.0.0.1:8008 with its web client at /client/.
# Ctrl-C cleans everything up.
# Env: DEMO_PORT (default 8008), DEMO_INTERVAL (seconds between messages, default 5),
#      DEMO_SKIP_SETUP=1 to skip scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT=${DEMO_PORT:-8008}
INTERVAL=${DEMO_INTERVAL:-5}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if [ "${DEMO_SKIP_SETUP:-0}" != 1 ]; then bash scripts/setup.sh; fi
make -j"$(nproc)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/syncv3-demo.XXXXXX")
chmod 755 "$WORK"  # PostgreSQL runs as the postgres user and must reach $WORK/pg
HS_PID="" PROXY_PID=""
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: cleaning up"
  [ -n "$PROXY_PID" ] && kill -TERM "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
  [ -n "$HS_PID" ] && kill -TERM "$HS_PID" 2>/dev/null && wait "$HS_PID" 2>/dev/null
  "$PY" tests/e2e/pgtmp.py stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
# A signal ends the demo after cleaning up (otherwise the script would go on after `wait`).
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

echo "demo: starting PostgreSQL in $WORK/pg"
"$PY" tests/e2e/pgtmp.py start "$WORK/pg" >/dev/null
DB=$("$PY" tests/e2e/pgtmp.py createdb "$WORK/pg" syncv3)

HS_PORT=$("$PY" -c 'import sys; sys.path.insert(0, "tests/e2e"); import pgtmp; print(pgtmp.free_port())')
"$PY" tests/e2e/fakehs.py --port "$HS_PORT" --script demo --interval "$INTERVAL" >"$WORK/fakehs.log" 2>&1 &
HS_PID=$!
for _ in $(seq 100); do grep -q "listening" "$WORK/fakehs.log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening" "$WORK/fakehs.log" || { cat "$WORK/fakehs.log"; echo "demo: fake homeserver did not start"; exit 1; }

SYNCV3_SERVER="http://127.0.0.1:$HS_PORT" SYNCV3_DB="$DB" SYNCV3_SECRET="demo-secret-$(date +%s)" \
SYNCV3_BINDADDR="127.0.0.1:$PORT" SYNCV3_LOG_LEVEL=info \
  "$ROOT/build/syncv3" 2>"$WORK/syncv3.log" &
PROXY_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$PROXY_PID" 2>/dev/null || { cat "$WORK/syncv3.log"; echo "demo: syncv3 exited"; exit 1; }
  sleep 0.1
done

URL="http://127.0.0.1:$PORT/_matrix/client/unstable/org.matrix.msc3575/sync"
cat <<MSG

  syncv3 demo is running (Ctrl-C to stop)

  web client       : http://127.0.0.1:$PORT/client/
                     paste the access token syt_demo_alice there (alice has 60 rooms)

  sliding sync URL : $URL
  homeserver (fake): http://127.0.0.1:$HS_PORT
  access tokens    : syt_demo_alice (@alice:localhost), syt_demo_bob (@bob:localhost)
  logs             : $WORK/syncv3.log  $WORK/fakehs.log

  Try:
  curl -s -X POST '$URL?timeout=10000' \\
    -H 'Authorization: Bearer syt_demo_alice' -H 'Content-Type: application/json' \\
    -d '{"lists":{"all":{"ranges":[[0,9]],"timeline_limit":1,"required_state":[["m.room.name",""]]}}}'

  Then repeat with ?pos=<pos from the response>&timeout=10000 to wait for the next message.

MSG
wait "$PROXY_PID" || true
PROXY_PID=""
echo "demo: syncv3 exited; last log lines:"; tail -20 "$WORK/syncv3.log"
