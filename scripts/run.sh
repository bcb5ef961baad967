#!/usr/bin/env bash
# Sets up and runs the node on its embedded default: RocksDB under ./data, demo data if empty.
# Extra arguments go to `idnode serve` (see `idnode serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/idnode --data-dir "${IDNODE_DATA_DIR:-data}" serve "$@"
