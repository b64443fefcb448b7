#!/usr/bin/env bash
# Makes sure `redis-server` is on PATH: the cache tests and `npm run bench:cache` start a real one.
# Installs Debian's package when it is missing (as root: CI and the dev machines run as root).
# Used by .ci/run and by test/cache/redis-server.ts, so a fresh machine needs no manual step.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "redis-server is missing; install it with: sudo apt-get install -y redis-server" >&2
  exit 1
fi
echo "[redis] installing redis-server from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# Debian's package may start a system-wide server on 6379; the tests start their own on free
# ports and need none running.
command -v redis-server >/dev/null
