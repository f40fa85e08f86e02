#!/usr/bin/env bash
# Idempotent setup for Debian/Ubuntu: installs the system packages the gateway, its tests and
# its benchmarks need (only those missing), then the npm dependencies (only when the lock
# file changed). `make run` and `make test` call it first, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# nginx + the Lua module and lua-resty-core are the OpenResty runtime pieces Debian ships;
# luajit2 is OpenResty's LuaJIT (busted runs on it); nats-server is the embedded broker.
# lua-check is luacheck, run over the compiled Lua by `make test`.
# redis-server + lua-nginx-redis (lua-resty-redis, installed as `nginx.redis`): the optional
# Redis rate-limit backend and its tests.
# deploy/runtime-packages.txt: what the gateway itself runs on (the Docker image installs the
# same list); then what the tests, benchmarks and the embedded stack need.
mapfile -t RUNTIME < <(grep -Ev '^\s*(#|$)' deploy/runtime-packages.txt)
PACKAGES=("${RUNTIME[@]}" luajit2 lua-busted lua-check nats-server redis-server wrk curl openssl)
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # nginx's Debian package starts a default server on :80; we never use it.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

# npm ci only when package-lock.json changed since the last install here.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
# A `npm ci` run by hand (after the lock last changed) counts as this install.
if [ ! -f node_modules/.beamline-lock-hash ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "$lock_hash" > node_modules/.beamline-lock-hash
fi
if [ ! -d node_modules ] || [ "$(cat node_modules/.beamline-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.beamline-lock-hash
fi
