#!/usr/bin/env bash
# Browser test: syncv3's web client (/client/) in Debian's Chromium, driven by playwright-core
# (client.test.mjs, node --test), against the stack of the real-client test: a throwaway
# PostgreSQL, the fake homeserver of tests/js/scenario.py (with the demo's users and rooms) and
# syncv3. tests/js/run.sh starts and stops all of it; see there for the environment variables.
# Last line: "N passed, N failed[, N skipped]".
#
# Env (besides tests/js/run.sh's): SYNCV3_BROWSER_SCREENSHOT  where to write the screenshot
#      (default: the work dir; SYNCV3_BROWSER_SCREENSHOT=docs/client.png refreshes the README's)
#      SYNCV3_CHROMIUM  the browser (default /usr/bin/chromium)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -n "${SYNCV3_BROWSER_SCREENSHOT:-}" ]; then
  case "$SYNCV3_BROWSER_SCREENSHOT" in
    /*) ;;
    *) SYNCV3_BROWSER_SCREENSHOT=$(pwd)/$SYNCV3_BROWSER_SCREENSHOT ;;
  esac
  export SYNCV3_BROWSER_SCREENSHOT
fi
if [ ! -x "${SYNCV3_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "tests/browser: ${SYNCV3_CHROMIUM:-/usr/bin/chromium} is missing (scripts/setup.sh installs chromium)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
SYNCV3_NODE_SUITE="$HERE" exec bash "$HERE/../js/run.sh" "$@"
