#!/usr/bin/env bash
# Issue 9: does training a filling model with a lesion rim beside its masks (--augmentation strong_rim)
# stop it from continuing real lesions' partial-volume rim into its fills?
#
#   bash benchmarks/context_rim.sh train     # two fine-tunes side by side, one CPU thread each (~40 min)
#   bash benchmarks/context_rim.sh score     # transplanted lesions (both patients, the test phantoms),
#                                            # the phantoms' own lesions, the patients' real lesions
#
# Both runs start from the phantom-only demo model (ldiff/demo_models/t1_cond_fill at commit 553a926,
# restored by benchmarks/phantom_only_model.sh) and train 800 steps on the 24 training phantoms of
# Dataset002_MSPhantomT1 with the same settings; `rim` adds the rim augmentation, `control` does not.
# Neither ever saw a real patient, so every patient number is a test number. Patients:
# ../shared/data/open_ms_data (Lesjak et al. 2017, CC-BY; read in place, never copied).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
runs="${RUNS:-benchmark_results/rim_runs}"
out="${OUT:-benchmark_results/context_rim}"
demo="benchmark_results/models/demo_phantoms"
steps="${STEPS:-800}"
model() { echo "$runs/$1/Dataset002_MSPhantomT1/cond_fill__2d/fold_all"; }

bash benchmarks/phantom_only_model.sh  # restored from git, with its intensity landmarks

case "${1:-}" in
  train)
    [ -f ldiff_preprocessed/Dataset002_MSPhantomT1/plans.json ] || ldiff_plan_and_preprocess -d 002 --override \
      "2d.patch_size=[64,64]" 2d.network.num_levels=4 "2d.network.channels=[32,64,128,128]" 2d.batch_size=16 \
      diffusion.prediction_type=v_prediction
    for run in rim control; do
      augmentation=$([ "$run" = rim ] && echo strong_rim || echo strong)
      ldiff_results="$PWD/$runs/$run" OMP_NUM_THREADS=1 ldiff_train 2 2d cond_fill -f all --pretrained-weights "$demo" \
        --steps "$steps" --lr 5e-5 --warmup-steps 50 --augmentation "$augmentation" --validate-every 0 \
        --checkpoint-every 100 --num-workers 0 &
    done
    wait
    ;;
  score)
    methods=("ldiff:$(model rim)" "ldiff:$(model control)" "ldiff:$demo")
    for p in 07 19; do
      python benchmarks/fill_error_parts.py --patient "$p" -o "$out/patient$p" --methods "${methods[@]}" patch biharmonic
      ldiff_benchmark -i "$data/patient$p/T1.nii.gz" --mask "$data/patient$p/lesion_mask.nii.gz" --channel-names T1w \
        -o "$out/patient${p}_real" --methods "${methods[@]}" --count 1 --no-lpips
    done
    python benchmarks/fill_error_parts.py --dataset 002 -o "$out/phantoms" --methods "${methods[@]}" patch biharmonic
    python benchmarks/fill_comparison.py -d 2 --models "$(model rim)" "$(model control)" "$demo" --no-lpips -o "$out/phantoms_own"
    ;;
  *) echo "usage: $0 train|score"; exit 2 ;;
esac
