#!/usr/bin/env bash
# syncv3 benchmark (never part of pass/fail). Usage: bench/run.sh [N ...] [--options]
#   bench/run.sh                 # 100, 800 and 4,000 rooms
#   bench/run.sh 100 800 4000 --json bench.json
# BENCH_NO_MAKE=1 skips `make`; see bench/README.md and `bench/bench.py --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ "${BENCH_NO_MAKE:-0}" != 1 ]; then make -s -j"$(nproc)" >&2; fi
exec "$PY" bench/bench.py "$@"
