#!/usr/bin/env bash
# Sets up and runs every check: generated code up to date, ruff, and the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The native accelerators (setup.py) need a C compiler; the tests require them built.
if ! command -v cc >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev
fi
bash scripts/setup.sh
# The Redis Cluster tests start real redis-server processes (tests/redis_cluster.py).
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
  else
    echo "redis-server is missing and the Redis Cluster tests need it:" \
      "sudo apt-get install -y redis-server" >&2
    exit 1
  fi
fi
echo "== generated protobuf code matches proto/"
PYTHON=.venv/bin/python bash scripts/gen_proto.sh >/dev/null
if ! git diff --quiet -- registry/pb resolver/pb 2>/dev/null; then
  git --no-pager diff --stat -- registry/pb resolver/pb
  echo "generated code differs from proto/: run scripts/gen_proto.sh and commit the result" >&2
  exit 1
fi
echo "== native accelerators built"
export IDNODE_REQUIRE_NATIVE=1 IDNODE_NATIVE=1
.venv/bin/python -c 'from registry import native
for name in ("cache._sieve", "resolver._hotpath", "registry.bulk._csvfast", "registry.bulk._runs", "registry.bulk._lines"):
    native.load(name)'
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== pytest"
.venv/bin/pytest "$@"
