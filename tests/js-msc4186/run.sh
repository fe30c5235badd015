#!/usr/bin/env bash
# Real-client test with matrix-js-sdk 37.5.0 speaking MSC4186 (simplified sliding sync):
# this folder's *.test.mjs against the stack of tests/js/run.sh (a throwaway PostgreSQL, the
# fake homeserver of tests/js/scenario.py, syncv3), which starts and stops all of it; see
# there for the environment variables. Last line: "N passed, N failed[, N skipped]".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SYNCV3_NODE_SUITE="$HERE" exec bash "$HERE/../js/run.sh" "$@"
