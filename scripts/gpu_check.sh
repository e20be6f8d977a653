#!/usr/bin/env bash
# A prepared GPU check (issue 14): a few paper-profile epochs of Stage 1 and Stage 2 with AMP on
# SIRST, then the model benchmark (base and tiny, batch 1 and 8); writes gpu_check.json.
# Runs in <= 8 minutes on one GPU. Data: ../shared/datasets/SIRST, or set NAIRSTD_DATA.
# Extra arguments go to `python -m nairstd.gpu_check` (e.g. --device cpu --epoch-steps 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
if [[ -z "${NAIRSTD_DATA:-}" && -d ../shared/datasets ]]; then
    export NAIRSTD_DATA="$(cd ../shared/datasets && pwd)"
fi
exec timeout 480 python -m nairstd.gpu_check "$@"
