#!/usr/bin/env bash
# Issue 9: ldiff_predict's histogram standardisation (ldiff.preprocessing.standardisation) on and off,
# on the same cases: both real patients' transplanted lesions over five seeds and their real lesions,
# and the six test phantoms of Dataset002 (transplanted lesions, and their own lesions).
#
#   bash benchmarks/standardisation.sh [patients|real|phantoms|own|all]     (default all)
#
# Models: the phantom-only model (ldiff/demo_models/t1_cond_fill as of commit 553a926, trained on the
# 24 phantoms of Dataset002 only; restored into benchmark_results/models/demo_phantoms if missing, and
# its intensity landmarks recorded from those phantoms) and the shipped model (saw both patients, so
# its patient numbers are not test numbers). Patients: ../shared/data/open_ms_data (Lesjak et al.
# 2017, Neuroinformatics, doi:10.1007/s12021-017-9348-7, CC-BY; read in place, never copied).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
out="${OUT:-benchmark_results/standardisation}"
demo="benchmark_results/models/demo_phantoms"
shipped="ldiff/demo_models/t1_cond_fill"
what="${1:-all}"

bash benchmarks/phantom_only_model.sh  # restored from git, with its intensity landmarks
both() { echo "ldiff:$1" "ldiff:$1@standardise=false"; }

if [[ "$what" == patients || "$what" == all ]]; then
  for p in 07 19; do
    ldiff_benchmark -i "$data/patient$p/T1.nii.gz" --mask "$data/patient$p/lesion_mask.nii.gz" --channel-names T1w \
      -o "$out/patient$p" --methods $(both "$demo") $(both "$shipped") patch biharmonic ringmedian \
      --no-lpips --no-real-lesions --repeats 5
  done
fi
if [[ "$what" == real || "$what" == all ]]; then
  for p in 07 19; do  # the transplanted part of these runs (--count 1) means nothing
    ldiff_benchmark -i "$data/patient$p/T1.nii.gz" --mask "$data/patient$p/lesion_mask.nii.gz" --channel-names T1w \
      -o "$out/patient${p}_real" --methods $(both "$demo") $(both "$shipped") --no-lpips --count 1
  done
fi
if [[ "$what" == phantoms || "$what" == all ]]; then
  ldiff_benchmark -d 002 --split Ts -o "$out/phantoms" --methods $(both "$demo") $(both "$shipped") patch biharmonic \
    --no-real-lesions --no-lpips
fi
if [[ "$what" == own || "$what" == all ]]; then
  python benchmarks/fill_comparison.py -d 2 --models "$demo" "$shipped" --variants default standardise=false \
    --no-lpips -o "$out/phantoms_own"
fi
