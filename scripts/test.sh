#!/usr/bin/env bash
# Set up (idempotent), lint, and run the whole test suite, notebooks included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -n 2 -q --nbmake tests notebooks "$@"
