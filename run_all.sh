#!/usr/bin/env bash
# Regenerate every table and figure of the paper: runs notebooks/NN_*.ipynb in order with
# papermill into outputs/notebooks/.
#   ./run_all.sh [--profile smoke|quick|paper] [--from NN]
# Uses ../shared/datasets when NAIRSTD_DATA is unset and that folder exists; otherwise the
# built-in synthetic datasets (generated into data/ by notebook 01).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
profile=quick
from=01
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --from) from="$2"; shift 2 ;;
    --from=*) from="${1#*=}"; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in smoke|quick|paper) ;; *) echo "run_all.sh: unknown profile $profile" >&2; exit 2 ;; esac
source scripts/bootstrap.sh
if [ -z "${NAIRSTD_DATA:-}" ] && [ -d ../shared/datasets ]; then
  export NAIRSTD_DATA="$(cd ../shared/datasets && pwd)"
fi
echo "run_all.sh: profile $profile, data roots: ${NAIRSTD_DATA:-<none>} + data/"
mkdir -p outputs/notebooks
total_start=$SECONDS
for notebook in notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$notebook" .ipynb)"
  [ "${name:0:2}" \< "$from" ] && continue
  start=$SECONDS
  echo "== $name"
  if ! papermill --cwd notebooks --log-level WARNING -p profile "$profile" \
      "$notebook" "outputs/notebooks/$name.ipynb"; then
    echo "run_all.sh: FAILED in $name (executed copy with the failing cell: outputs/notebooks/$name.ipynb)" >&2
    exit 1
  fi
  echo "   $name: $((SECONDS - start)) s"
done
echo "run_all.sh: all notebooks done in $((SECONDS - total_start)) s (profile $profile)"
