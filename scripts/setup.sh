#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need (Debian 12, as root).
# Idempotent and fast when nothing is missing: apt is only touched for missing packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential pkg-config
  libmicrohttpd-dev libcurl4-openssl-dev libpq-dev libjansson-dev libssl-dev uthash-dev libunistring-dev
  libcmocka-dev libgoogle-perftools-dev google-perftools clang libclang-rt-14-dev
  postgresql postgresql-client
  python3 python3-pytest python3-pytest-timeout
  curl ca-certificates
  chromium fonts-dejavu-core
  nginx   # only its binary: tests/e2e/test_deploy.py runs nginx -t and a private instance on the examples
)

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
# Node is needed only for the real-client and browser tests; any node >= 18 on PATH will do.
if [ -f tests/js/package.json ] && ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
else
  echo "setup: all Debian packages present"
fi

# The Node tests' packages (matrix-js-sdk 37.2.0 in tests/js, 37.5.0 in tests/js-msc4186;
# playwright-core, which drives the Debian chromium above and never downloads a browser of its
# own).
for dir in tests/js tests/js-msc4186 tests/browser; do
  [ -f "$dir/package.json" ] || continue
  (
    cd "$dir"
    stamp=node_modules/.syncv3-setup-stamp
    lock=package-lock.json
    [ -f "$lock" ] || lock=package.json
    if [ -f "$stamp" ] && [ "$stamp" -nt "$lock" ] && [ "$stamp" -nt package.json ]; then
      echo "setup: $dir node_modules up to date"
    else
      if [ -f package-lock.json ]; then
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
      else
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund
      fi
      touch "$stamp"
    fi
  )
done
echo "setup: done"
