#!/usr/bin/env bash
# C5's reference units (issue 21) on a lent GPU machine, prepared to run once within a device
# call: every pending C5 unit (the deep baselines, 3 seeds + the doubled seed), WORKERS worker
# processes sharing the GPU, stopped after BUDGET_S seconds. Units finished by then write their
# bundles; an interrupted unit is simply lost (the machine starts bare next time). The new
# bundles are packed into $OUT/c5_bundles.tar.gz (one file: the device returns at most 8), to be
# unpacked into the checkout and committed:
#
#   here, once:  rm -rf .device_data && mkdir -p .device_data && cp -r ../shared/datasets/SIRST \
#                  data/IRSTD-Hard .device_data/   (data/IRSTD-Hard: `python -m nairstd data hard`)
#                echo /.device_data/ >> .git/info/exclude
#   device:      run(command="bash scripts/reference_gpu.sh", carry=[".device_data"], timeout_s=560)
#   here, after: tar xzf <files_at>/c5_bundles.tar.gz && git add results/reference
#
# Env: BUDGET_S (default 480), WORKERS (8), DEVICE (cuda), CLAIMS (C5).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# A GPU machine's own python3 holds a CUDA torch and the packages nairstd needs (no registry).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -z "${NAIRSTD_DATA:-}" ]]; then
    for candidate in .device_data ../shared/datasets; do
        if [[ -d "$candidate/SIRST" ]]; then export NAIRSTD_DATA="$(cd "$candidate" && pwd)"; break; fi
    done
fi
out="${OUT:-$PWD}"
before="$(mktemp)"
find results/reference -name bundle.json | sort >"$before"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
# SIGTERM at the budget: `reference run` stops its workers and returns (finished bundles stay).
# shellcheck disable=SC2086
timeout --signal=TERM "${BUDGET_S:-480}" python3 -m nairstd reference run \
    --claims ${CLAIMS:-C5} --device "${DEVICE:-cuda}" --workers "${WORKERS:-8}"
echo "reference run exit status $?"
find results/reference -name bundle.json | sort | comm -13 "$before" - | xargs -r -n1 dirname \
    >"$out/new_bundles.txt"
echo "$(wc -l <"$out/new_bundles.txt") new bundle(s)"
if [[ -s "$out/new_bundles.txt" ]]; then
    tar czf "$out/c5_bundles.tar.gz" -T "$out/new_bundles.txt"
fi
python3 -m nairstd reference status --claims ${CLAIMS:-C5} 2>/dev/null | tail -30
