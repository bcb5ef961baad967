#!/usr/bin/env bash
# Sets up and runs every check: generated code up to date, ruff, and the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== generated protobuf code matches proto/"
PYTHON=.venv/bin/python bash scripts/gen_proto.sh >/dev/null
if ! git diff --quiet -- registry/pb resolver/pb 2>/dev/null; then
  git --no-pager diff --stat -- registry/pb resolver/pb
  echo "generated code differs from proto/: run scripts/gen_proto.sh and commit the result" >&2
  exit 1
fi
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== pytest"
.venv/bin/pytest "$@"
