#!/usr/bin/env bash
# Create (once) and activate the project's virtual environment in .venv, with exact pins.
# Sourced by run_all.sh and tests/run.sh. Idempotent: reinstalls only when pyproject.toml or
# requirements-lock.txt changed since the last successful install.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NAIRSTD_VENV:-$repo_root/.venv}"
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
if [ ! -x "$venv/bin/python" ]; then
  version="$("$python_bin" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$version" != "3.11" ]; then
    echo "bootstrap: need Python 3.11 (found $version at $(command -v "$python_bin")); set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  echo "bootstrap: creating $venv"
  "$python_bin" -m venv "$venv"
fi
stamp="$venv/.nairstd-install-stamp"
want="$(cat "$repo_root/pyproject.toml" "$repo_root/requirements-lock.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing pinned dependencies into $venv (first run: about a minute)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$repo_root/requirements-lock.txt" -e "$repo_root[test]"
  echo "$want" > "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
