#!/usr/bin/env bash
# The phantom-only model that every honest real-patient number of issue 9 uses: ldiff/demo_models/t1_cond_fill
# as of commit 553a926 (24 phantoms of the MNI152 template, never a real patient), restored from git into
# benchmark_results/models/demo_phantoms, with the intensity landmarks of those 24 training phantoms
# recorded in its model.json (models of that time predate them; ldiff_predict standardises to them).
#
#   bash benchmarks/phantom_only_model.sh      (does nothing where both are there already)
set -euo pipefail
cd "$(dirname "$0")/.."
demo="benchmark_results/models/demo_phantoms"
if [ ! -f "$demo/checkpoint_final.pth" ]; then
  mkdir -p "$demo"
  for f in $(git ls-tree --name-only 553a926 ldiff/demo_models/t1_cond_fill/); do
    git show "553a926:$f" > "$demo/$(basename "$f")"
  done
fi
if ! grep -q intensity_landmarks "$demo/model.json"; then
  [ -d ldiff_preprocessed/Dataset002_MSPhantomT1 ] || ldiff_plan_and_preprocess -d 002
  python -m ldiff.cli.record_landmarks "$demo" ldiff_preprocessed/Dataset002_MSPhantomT1/ldiffPlans_1x1x1mm \
    --source "the 24 phantoms of Dataset002_MSPhantomT1 it was trained on (ldiff_train -f all)"
fi
