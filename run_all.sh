#!/usr/bin/env bash
# Regenerate every table and figure of the paper: runs notebooks/NN_*.ipynb in order with
# papermill into outputs/notebooks/ (+ HTML copies) and writes outputs/REPORT.md.
#   ./run_all.sh [--profile NAME] [--from NN]
# NAME: a profile listed by `python -m nairstd profiles` (default: its `--default`).
# Uses ../shared/datasets when NAIRSTD_DATA is unset and that folder exists; otherwise the
# built-in synthetic datasets (generated into data/ by notebook 01). Trained runs are cached in
# outputs/runs/ and reused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
profile=
from=01
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --from) from="$2"; shift 2 ;;
    --from=*) from="${1#*=}"; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
# --from names a notebook that exists (3 and 03 both mean 03_*), else nothing would run.
if ! [[ "$from" =~ ^[0-9]{1,2}$ ]]; then
  echo "run_all.sh: error: --from $from: expected a notebook number such as 03" >&2; exit 2
fi
from="$(printf '%02d' "$((10#$from))")"
if ! compgen -G "notebooks/${from}_*.ipynb" >/dev/null; then
  have="$(cd notebooks && ls [0-9][0-9]_*.ipynb | cut -c1-2 | tr '\n' ' ')"
  echo "run_all.sh: error: --from $from: no notebook notebooks/${from}_*.ipynb (have: ${have% })" >&2
  exit 2
fi
# The profile names live in nairstd/profiles.py (one home; also `python -m nairstd profiles`).
# It imports only the standard library, so a wrong --profile is refused before the bootstrap.
read -r default_profile profiles <<<"$("${PYTHON:-python3}" -c 'from nairstd.profiles import DEFAULT_PROFILE as d, PROFILES as p; print(d, *p)')"
profile="${profile:-$default_profile}"
known=; for name in $profiles; do [ "$name" != "$profile" ] || known=1; done
if [ -z "$known" ]; then
  echo "run_all.sh: error: unknown profile $profile (have: $profiles)" >&2; exit 2
fi
source scripts/bootstrap.sh
if [ -z "${NAIRSTD_DATA:-}" ] && [ -d ../shared/datasets ]; then
  NAIRSTD_DATA="$(cd ../shared/datasets && pwd)"
  export NAIRSTD_DATA
fi
# glibc malloc otherwise returns every large activation to the OS and page-faults it back in:
# measured 2x on the native branch at batch 1 (see nairstd.bench.tune_malloc).
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-67108864}"
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-134217728}"
echo "run_all.sh: profile $profile, data roots: ${NAIRSTD_DATA:-<none>} + data/"
out=outputs/notebooks
mkdir -p "$out"
times="$out/times.json"
# A resumed run (--from NN > 01) keeps the times of the notebooks it does not rerun (and the
# claims they wrote, stamped with their profile and commit); a full run starts both afresh.
if [ "$from" = "01" ] || [ ! -f "$times" ]; then echo "{}" > "$times"; fi
if [ "$from" = "01" ]; then rm -rf outputs/claims; fi
total_start=$SECONDS
for notebook in notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$notebook" .ipynb)"
  [[ "${name:0:2}" < "$from" ]] && continue
  start=$SECONDS
  echo "== $name ($(date +%H:%M:%S))"
  if ! papermill --cwd notebooks --log-level WARNING --no-progress-bar -p profile "$profile" \
      "$notebook" "$out/$name.ipynb"; then
    echo "run_all.sh: FAILED in $name, $(python -m nairstd.report --failed "$out/$name.ipynb")" >&2
    echo "run_all.sh: executed copy: $out/$name.ipynb; fix, then resume with --from ${name:0:2}" >&2
    exit 1
  fi
  seconds=$((SECONDS - start))
  python - "$times" "$name" "$seconds" <<'PY'
import json, sys
path, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
times = json.load(open(path)); times[name] = seconds
json.dump(times, open(path, "w"), indent=1)
PY
  jupyter nbconvert --to html --log-level WARN "$out/$name.ipynb" --output-dir "$out" >/dev/null
  echo "   $name: $seconds s"
done
python -m nairstd.report --profile "$profile" --times "$times"
echo "run_all.sh: done in $((SECONDS - total_start)) s (profile $profile); see outputs/REPORT.md"
