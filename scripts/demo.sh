#!/usr/bin/env bash
# The main job on a fresh machine: install ldiff, build the example dataset, verify, fingerprint,
# plan and preprocess it. Later stages (training, filling, evaluation) are added here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ ! -f "${ldiff_raw:-ldiff_raw}/Dataset001_MSPhantom/dataset.json" ]; then
  ldiff_make_example
else
  echo "Dataset001_MSPhantom already exists: reusing it (ldiff_make_example --overwrite rebuilds it)."
fi
ldiff_plan_and_preprocess -d 001
python3 -m ldiff.planning.summary -d 001
