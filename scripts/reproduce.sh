#!/usr/bin/env bash
# Set up (idempotent) and regenerate every figure: `bash scripts/reproduce.sh --quick` for the
# quick mode (figures/quick/), without flags for the full one (figures/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/rmft reproduce "$@"
