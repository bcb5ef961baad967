#!/usr/bin/env bash
# Creates .venv (if missing) and installs idnode with its development tools into it.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
# The Redis Cluster tests need redis-server and redis-cli (Debian/Ubuntu: package redis-server).
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
  else
    echo "note: redis-server is missing, so the Redis Cluster tests will fail;" \
      "install it with: sudo apt-get install -y redis-server" >&2
  fi
fi
