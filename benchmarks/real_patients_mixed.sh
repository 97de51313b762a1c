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
#   bash benchmarks/real_patients_mixed.sh score        # benchmark both models on the other patient
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
model() { echo "$results/Dataset1$1_PhantomsP$1T1/cond_fill__p3d/fold_all"; }

make_dataset() {  # $1 = patient number (07 or 19)
  local d="$raw/Dataset1$1_PhantomsP$1T1" case
  [ -d "$phantoms/imagesTr" ] || { echo "needs $phantoms (see scripts/demo.sh)"; exit 1; }
  rm -rf "$d"; mkdir -p "$d/imagesTr" "$d/labelsTr" "$d/tissueTr"
  for image in "$phantoms"/imagesTr/*_0000.nii.gz; do
    case=$(basename "$image" _0000.nii.gz)
    ln -s "$(realpath "$image")" "$d/imagesTr/${case}_0000.nii.gz"
    ln -s "$(realpath "$phantoms/labelsTr/$case.nii.gz")" "$d/labelsTr/$case.nii.gz"
    ln -s "$(realpath "$phantoms/tissueTr/$case.nii.gz")" "$d/tissueTr/$case.nii.gz"
  done
  for r in $(seq 1 "$repeats"); do
    ln -s "$(realpath "$data/patient$1/T1.nii.gz")" "$d/imagesTr/patient$1r${r}_0000.nii.gz"
    ln -s "$(realpath "$data/patient$1/lesion_mask.nii.gz")" "$d/labelsTr/patient$1r${r}.nii.gz"
  done
  local n=$(( $(ls "$d/labelsTr" | wc -l) ))
  printf '{"channel_names": {"0": "T1w"}, "labels": {"background": 0, "lesion": 1}, "numTraining": %d, "file_ending": ".nii.gz", "description": "24 MNI152 phantoms (Dataset002) and patient%s of the Ljubljana MS dataset (Lesjak et al. 2017, CC-BY) listed %d times"}\n' \
    "$n" "$1" "$repeats" > "$d/dataset.json"
}

case "${1:-}" in
  train)
    p="$2"
    make_dataset "$p"
    ldiff_plan_and_preprocess -d "1$p" --override "${plan_overrides[@]}"
    OMP_NUM_THREADS=1 ldiff_train "1$p" p3d cond_fill -f all --pretrained-weights "$demo" --steps "$steps" --lr 5e-5 \
      --warmup-steps 50 --augmentation strong --validate-every 400 --checkpoint-every 100 --num-workers 0 ${CONTINUE:+--c}
    ;;
  score)
    classic=(biharmonic patch ringmedian slf)
    for pair in "07 19" "19 07"; do
      set -- $pair
      m=$(model "$2")
      ldiff_benchmark -i "$data/patient$1/T1.nii.gz" --mask "$data/patient$1/lesion_mask.nii.gz" --channel-names T1w \
        -o "$out/patient$1" --methods "ldiff:$demo" "ldiff:$m" "ldiff:$m@sampler=dpm_solver,steps=10,num_samples=4" \
        "${classic[@]}" --no-real-lesions
    done
    ;;
  *) echo "usage: $0 train 07|19 | score"; exit 2 ;;
esac
