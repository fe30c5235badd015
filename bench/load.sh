#!/usr/bin/env bash
# syncv3 load test (never part of pass/fail). Usage: bench/load.sh [--options]
#   bench/load.sh                              # 100 users x 10 connections, 20 messages/s, 60 s
#   bench/load.sh --users 1000 --conns 1       # 1,000 users with one connection each
# BENCH_NO_MAKE=1 skips `make`; see bench/README.md and `bench/load.py --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ "${BENCH_NO_MAKE:-0}" != 1 ]; then make -s -j"$(nproc)" >&2; fi
exec "$PY" bench/load.py "$@"
