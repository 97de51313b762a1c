#!/usr/bin/env bash
# Issue 9: does training a filling model on samples smoothed as resampled scans are (--augmentation
# strong_blur) help it on real patients whose scans were resampled to the MNI grid?
#
#   bash benchmarks/blur_augmentation.sh train   # two 600-step fine-tunes side by side, one CPU thread each (~35 min)
#   bash benchmarks/blur_augmentation.sh score   # transplanted lesions over five seeds (both patients) and the
#                                                # test phantoms, with the default sampling
#
# Both runs start from the phantom-only model (benchmarks/phantom_only_model.sh) and train on the 24 training
# phantoms of Dataset002_MSPhantomT1 with the same settings and seed; `blur` uses strong_blur, `control` strong
# (what the phantom-only model was trained with). Neither ever saw a real patient, so every patient number is
# a test number. Patients: ../shared/data/open_ms_data (Lesjak et al. 2017, CC-BY; read in place).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
runs="${RUNS:-benchmark_results/blur_ft}"
out="${OUT:-benchmark_results/blur_augmentation}"
steps="${STEPS:-600}"
model() { echo "$runs/$1/Dataset002_MSPhantomT1/cond_fill__2d/fold_all"; }
bash benchmarks/phantom_only_model.sh

case "${1:-}" in
  train)
    for augmentation in strong_blur strong; do
      ldiff_results="$PWD/$runs/$augmentation" OMP_NUM_THREADS=1 ldiff_train 2 2d cond_fill -f all \
        --pretrained-weights benchmark_results/models/demo_phantoms --steps "$steps" --lr 5e-5 --warmup-steps 50 \
        --augmentation "$augmentation" --validate-every 0 --checkpoint-every 100 --num-workers 0 &
    done
    wait
    ;;
  score)
    methods=("ldiff:$(model strong_blur)" "ldiff:$(model strong)")
    for p in 07 19; do
      ldiff_benchmark -i "$data/patient$p/T1.nii.gz" --mask "$data/patient$p/lesion_mask.nii.gz" --channel-names T1w \
        -o "$out/patient$p" --methods "${methods[@]}" --no-lpips --no-real-lesions --repeats 5
    done
    ldiff_benchmark -d 002 --split Ts -o "$out/phantoms" --methods "${methods[@]}" --no-real-lesions --no-lpips
    ;;
  *) echo "usage: $0 train|score"; exit 2 ;;
esac
