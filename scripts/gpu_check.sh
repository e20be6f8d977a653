#!/usr/bin/env bash
# A prepared GPU check (issue 14): a few paper-profile epochs of Stage 1 and Stage 2 with AMP on
# SIRST, then the model benchmark (base and tiny, batch 1 and 8); writes gpu_check.json.
# Runs in <= 8 minutes on one GPU. Data: ../shared/datasets/SIRST, or set NAIRSTD_DATA.
# Extra arguments go to `python -m nairstd.gpu_check` (e.g. --device cpu --epoch-steps 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# A GPU machine's own python3 with a CUDA torch is used as it is (such machines often have no
# package registry); otherwise the pinned .venv is set up (CPU torch: the --device cpu path).
if python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    py=python3
else
    source scripts/bootstrap.sh
    py=python
fi
if [[ -z "${NAIRSTD_DATA:-}" && -d ../shared/datasets ]]; then
    export NAIRSTD_DATA="$(cd ../shared/datasets && pwd)"
fi
exec timeout 480 "$py" -m nairstd.gpu_check "$@"
