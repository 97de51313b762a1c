#!/usr/bin/env bash
# Issue 9: does a warm start (a smooth fill noised to t0, then denoised) fill real scans better than the
# whole walk from pure noise? Grid of t0 (cond_fill's --t0) on ldiff_benchmark's transplanted lesions.
#
#   bash benchmarks/warm_start.sh patients    # patient07 and patient19, phantom-only model (never saw either)
#   bash benchmarks/warm_start.sh phantoms    # the six test phantoms of Dataset002, shipped and phantom-only models
#   bash benchmarks/warm_start.sh real        # the patients' real lesions (residual contrast), phantom-only model
#   bash benchmarks/warm_start.sh own         # the test phantoms' own lesions (benchmarks/fill_comparison.py), shipped model
#
# Patients: ../shared/data/open_ms_data (Lesjak et al. 2017, CC-BY; read in place, never copied). The
# phantom-only model is ldiff/demo_models/t1_cond_fill as of commit 553a926 (trained on phantoms of the
# MNI152 template only), restored into benchmark_results/models/demo_phantoms by `git show` if missing.
# The shipped model saw both patients in training, so it is scored on the phantoms only.
# T0S (default "full 50 100 150 250") is the grid; every result folder holds benchmark.md/.csv/.json.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
out="${OUT:-benchmark_results/warm_start}"
demo="benchmark_results/models/demo_phantoms"
shipped="ldiff/demo_models/t1_cond_fill"
read -r -a t0s <<< "${T0S:-full 50 100 150 250}"

bash benchmarks/phantom_only_model.sh  # restored from git, with its intensity landmarks

methods() {  # $1 = model folder: one ldiff method per t0, then the classic fillers that lead somewhere
  local m=() t
  for t in "${t0s[@]}"; do m+=("ldiff:$1@t0=$t"); done
  echo "${m[@]}" ${CLASSIC:-patch biharmonic ringmedian slf}
}

case "${1:-}" in
  patients)
    for p in 07 19; do
      # shellcheck disable=SC2046
      ldiff_benchmark -i "$data/patient$p/T1.nii.gz" --mask "$data/patient$p/lesion_mask.nii.gz" --channel-names T1w \
        -o "$out/patient$p" --methods $(methods "$demo") --no-real-lesions --no-lpips
    done
    ;;
  real)
    for p in 07 19; do
      # shellcheck disable=SC2046
      ldiff_benchmark -i "$data/patient$p/T1.nii.gz" --mask "$data/patient$p/lesion_mask.nii.gz" --channel-names T1w \
        -o "$out/patient${p}_real" --methods $(CLASSIC="" methods "$demo") --count 1 --no-lpips
    done
    ;;
  phantoms)
    for model in "$shipped" "$demo"; do
      # shellcheck disable=SC2046
      ldiff_benchmark -d 002 --split Ts -o "$out/phantoms_$(basename "$model")" --methods $(methods "$model") \
        --no-real-lesions --no-lpips
    done
    ;;
  own)  # the test phantoms' own simulated lesions (truth: their lesion-free twins), shipped model
    variants=()
    for t in "${t0s[@]}"; do variants+=("t0=$t"); done
    python benchmarks/fill_comparison.py -d 2 --models "$shipped" --variants "${variants[@]}" --no-lpips \
      -o "$out/phantoms_own"
    ;;
  *) echo "usage: $0 patients|phantoms|real|own"; exit 2 ;;
esac
