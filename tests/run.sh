#!/usr/bin/env bash
# The test command (README): bootstraps .venv with exact pins, lints, runs the whole suite.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k metrics`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
# Debian's chromium for the JupyterLab browser test (once; that test skips with the reason if absent).
bash scripts/install_browser.sh
start=$SECONDS
ruff check nairstd tests notebooks/*.py
ruff format --check nairstd tests notebooks/*.py
python -m pytest -q -ra "$@"
echo "tests/run.sh: $((SECONDS - start)) s (after bootstrap)"
