#!/usr/bin/env bash
# Leave-one-patient-out models trained on phantoms and a real patient together (issue 9, section 2).
#
# For each real patient P of ../shared/data/open_ms_data (Lesjak et al. 2017, CC-BY; linked, never
# copied), a raw dataset Dataset1PP_PhantomsP{P}T1 holds the 24 training phantoms of Dataset002 (T1w)
# and patient P, and a p3d cond_fill model is fine-tuned on it from the shipped 2d demo model (its slice
# convolutions start as the identity). The model trained with patient07 is scored on patient19 and
# vice versa; no reported patient was in its model's training.
#
# The real patient is listed REPEATS times (links under other case names): with uniform sampling over
# cases, one real scan among 24 phantoms would be 4 % of the samples; 8 copies make it 25 %. Training
# masks go only into its normal-appearing WM and its real lesions are voided and never scored (as for
# every case with lesions), and strong augmentation makes each draw another view.
#
#   bash benchmarks/real_patients_mixed.sh train 07     # about 1 h on one CPU thread
#   bash benchmarks/real_patients_mixed.sh train all    # both patients: the shipped model (never scored on them)
#   bash benchmarks/real_patients_mixed.sh score        # benchmark both models on the other patient
#   bash benchmarks/real_patients_mixed.sh phantoms     # and on the example test phantoms
set -euo pipefail
cd "$(dirname "$0")/.."
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
raw="${ldiff_raw:-ldiff_raw}"
results="${ldiff_results:-ldiff_results}"
out="${OUT:-benchmark_results/real_patients_mixed}"
demo=ldiff/demo_models/t1_cond_fill
repeats="${REPEATS:-8}"
steps="${STEPS:-1200}"
phantoms="$raw/Dataset002_MSPhantomT1"
# The demo model's blocks as a pseudo-3D network: 6-slice stacks (4 filled + 1 context slice per side).
plan_overrides=("p3d.patch_size=[64,64]" p3d.network.num_levels=4 "p3d.network.channels=[32,64,128,128]"
                p3d.stack_depth=6 p3d.batch_size=3 diffusion.prediction_type=v_prediction
                mask_dilation.radius_voxels=2)
# Dataset107 (with patient07), Dataset119 (with patient19), Dataset120 (both: the shipped model).
dataset_name() { case "$1" in all) echo Dataset120_PhantomsP07P19T1 ;; *) echo "Dataset1$1_PhantomsP$1T1" ;; esac; }
dataset_id() { case "$1" in all) echo 120 ;; *) echo "1$1" ;; esac; }
model() { echo "$results/$(dataset_name "$1")/cond_fill__p3d/fold_all"; }

make_dataset() {  # $1 = 07, 19 (that patient) or all (both: the shipped model)
  local d case patients p r
  d="$raw/$(dataset_name "$1")"
  patients=$([ "$1" = all ] && echo "07 19" || echo "$1")
  [ -d "$phantoms/imagesTr" ] || { echo "needs $phantoms (see scripts/demo.sh)"; exit 1; }
  rm -rf "$d"; mkdir -p "$d/imagesTr" "$d/labelsTr" "$d/tissueTr"
  for image in "$phantoms"/imagesTr/*_0000.nii.gz; do
    case=$(basename "$image" _0000.nii.gz)
    ln -s "$(realpath "$image")" "$d/imagesTr/${case}_0000.nii.gz"
    ln -s "$(realpath "$phantoms/labelsTr/$case.nii.gz")" "$d/labelsTr/$case.nii.gz"
    ln -s "$(realpath "$phantoms/tissueTr/$case.nii.gz")" "$d/tissueTr/$case.nii.gz"
  done
  for p in $patients; do
    for r in $(seq 1 "$repeats"); do
      ln -s "$(realpath "$data/patient$p/T1.nii.gz")" "$d/imagesTr/patient${p}r${r}_0000.nii.gz"
      ln -s "$(realpath "$data/patient$p/lesion_mask.nii.gz")" "$d/labelsTr/patient${p}r${r}.nii.gz"
    done
  done
  local n=$(( $(ls "$d/labelsTr" | wc -l) ))
  printf '{"channel_names": {"0": "T1w"}, "labels": {"background": 0, "lesion": 1}, "numTraining": %d, "file_ending": ".nii.gz", "description": "24 MNI152 phantoms (Dataset002) and patient(s) %s of the Ljubljana MS dataset (Lesjak et al. 2017, CC-BY), each listed %d times"}\n' \
    "$n" "$patients" "$repeats" > "$d/dataset.json"
}

case "${1:-}" in
  train)
    p="$2"
    make_dataset "$p"
    ldiff_plan_and_preprocess -d "$(dataset_id "$p")" --override "${plan_overrides[@]}"
    OMP_NUM_THREADS=1 ldiff_train "$(dataset_id "$p")" p3d cond_fill -f all --pretrained-weights "$demo" --steps "$steps" --lr 5e-5 \
      --warmup-steps 50 --augmentation strong --validate-every 400 --checkpoint-every 100 --num-workers 0 ${CONTINUE:+--c}
    ;;
  score)
    # Transplanted lesions (truth known) and real lesions (residual contrast, time), each patient with the
    # model that never saw it; the shipped demo model and the classic fillers beside it.
    classic=(biharmonic patch ringmedian slf)
    for pair in "07 19" "19 07"; do
      set -- $pair
      m=$(model "$2")
      ldiff_benchmark -i "$data/patient$1/T1.nii.gz" --mask "$data/patient$1/lesion_mask.nii.gz" --channel-names T1w \
        -o "$out/patient$1" --methods "ldiff:$demo" "ldiff:$m" "ldiff:$m@num_samples=8" \
        "ldiff:$m@sampler=dpm_solver,steps=10,num_samples=4" "${classic[@]}" --no-real-lesions
      ldiff_benchmark -i "$data/patient$1/T1.nii.gz" --mask "$data/patient$1/lesion_mask.nii.gz" --channel-names T1w \
        -o "$out/patient$1_real" --methods "ldiff:$demo" "ldiff:$m" "${classic[@]}" --no-lpips
    done
    ;;
  phantoms)
    # The example dataset's six test phantoms (never in any model's training).
    ldiff_benchmark -d 002 --split Ts -o "$out/phantoms" --methods "ldiff:$demo" "ldiff:$(model 19)" "ldiff:$(model 07)" \
      biharmonic patch ringmedian slf --no-real-lesions
    ;;
  *) echo "usage: $0 train 07|19 | score | phantoms"; exit 2 ;;
esac
