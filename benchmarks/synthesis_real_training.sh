#!/usr/bin/env bash
# Synthesis trained with real lesions (issue 12, section 1): leave-one-patient-out cond_synth models.
#
# For each real patient P of ../shared/data/open_ms_data (Lesjak et al. 2017, CC-BY; linked, never
# copied), a raw dataset Dataset3PP_PhantomsP{P}Synth holds the 24 training phantoms of Dataset001
# (T1w + FLAIR, simulated lesions) and patient P (T1w + FLAIR, its expert lesion masks), listed REPEATS
# times so that its real lesions are about a quarter of the draws. The shipped synthesis model
# (phantoms only) is fine-tuned on it: cond_synth learns to paint the dilated lesion from its voided
# surroundings, so the real patient's lesions teach it the contrast and texture of real lesions. The
# model trained with patient07 is scored on patient19 and vice versa (benchmarks/synthesis_real_patients.py),
# and both on the example test phantoms (benchmarks/synthesis_comparison.py).
#
#   bash benchmarks/synthesis_real_training.sh train 07   # about half an hour on one CPU thread
#   bash benchmarks/synthesis_real_training.sh score      # each model on the patient it never saw, and the phantoms
#   bash benchmarks/synthesis_real_training.sh train-phantoms  # the shipped model fine-tuned on Dataset001 alone
#   bash benchmarks/synthesis_real_training.sh score-contrast  # every model, lesion contrast matched / the model's own
#
# The same with the lesion-level cue (ldiff_train --lesion-level-cue: the model is told each lesion's mean
# intensity, so that it can paint a patient's own lesion contrast; documentation/training.md). Results go
# to a results root of their own ($ldiff_results/lesion_level_cue), so both variants are kept:
#   bash benchmarks/synthesis_real_training.sh train-cue 07   # 1000 steps, about 40 minutes on one thread
#   bash benchmarks/synthesis_real_training.sh score-cue      # held-out patient told its training data's lesion
#                                                             # contrast (default), its own (own), or half its own (own-half)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
raw="${ldiff_raw:-ldiff_raw}"
results="${ldiff_results:-ldiff_results}"
out="${OUT:-benchmark_results/synthesis_real_training}"
shipped=ldiff/demo_models/t1_flair_cond_synth
repeats="${REPEATS:-8}"
steps="${STEPS:-800}"
phantoms="$raw/Dataset001_MSPhantom"
# The shipped synthesis model's plan (its TRAINING.md), so that its weights fit.
plan_overrides=("2d.patch_size=[64,64]" 2d.network.num_levels=4 "2d.network.channels=[32,64,128,128]"
                2d.batch_size=16 diffusion.prediction_type=v_prediction mask_dilation.radius_voxels=1)
dataset_name() { echo "Dataset3$1_PhantomsP$1Synth"; }
cue_results="$results/lesion_level_cue"
model() { echo "${2:-$results}/$(dataset_name "$1")/cond_synth__2d/fold_all"; }

make_dataset() {  # $1 = 07 or 19
  local d case r
  d="$raw/$(dataset_name "$1")"
  [ -d "$phantoms/imagesTr" ] || { echo "needs $phantoms (ldiff_make_example builds it)"; exit 1; }
  rm -rf "$d"; mkdir -p "$d/imagesTr" "$d/labelsTr" "$d/tissueTr"
  for image in "$phantoms"/imagesTr/*_0000.nii.gz; do
    case=$(basename "$image" _0000.nii.gz)
    ln -s "$(realpath "$image")" "$d/imagesTr/${case}_0000.nii.gz"
    ln -s "$(realpath "$phantoms/imagesTr/${case}_0001.nii.gz")" "$d/imagesTr/${case}_0001.nii.gz"
    ln -s "$(realpath "$phantoms/labelsTr/$case.nii.gz")" "$d/labelsTr/$case.nii.gz"
    ln -s "$(realpath "$phantoms/tissueTr/$case.nii.gz")" "$d/tissueTr/$case.nii.gz"
  done
  for r in $(seq 1 "$repeats"); do
    ln -s "$(realpath "$data/patient$1/T1.nii.gz")" "$d/imagesTr/patient$1r${r}_0000.nii.gz"
    ln -s "$(realpath "$data/patient$1/FLAIR.nii.gz")" "$d/imagesTr/patient$1r${r}_0001.nii.gz"
    ln -s "$(realpath "$data/patient$1/lesion_mask.nii.gz")" "$d/labelsTr/patient$1r${r}.nii.gz"
  done
  printf '{"channel_names": {"0": "T1w", "1": "FLAIR"}, "labels": {"background": 0, "lesion": 1}, "numTraining": %d, "file_ending": ".nii.gz", "description": "24 MNI152 phantoms (Dataset001) and patient %s of the Ljubljana MS dataset (Lesjak et al. 2017, CC-BY), listed %d times"}\n' \
    "$(ls "$d/labelsTr" | wc -l)" "$1" "$repeats" > "$d/dataset.json"
}

case "${1:-}" in
  prepare)
    make_dataset "$2"
    ldiff_plan_and_preprocess -d "3$2" --override "${plan_overrides[@]}"
    ;;
  train)
    [ -f "${ldiff_preprocessed:-ldiff_preprocessed}/$(dataset_name "$2")/plans.json" ] || "$0" prepare "$2"
    OMP_NUM_THREADS=1 ldiff_train "3$2" 2d cond_synth -f all --pretrained-weights "$shipped" --steps "$steps" --lr 5e-5 \
      --warmup-steps 50 --augmentation strong --validate-every 400 --checkpoint-every 100 --num-workers 0 ${CONTINUE:+--c}
    ;;
  score)
    for pair in "07 19" "19 07"; do
      set -- $pair  # $1 = the patient scored, $2 = the patient its model was trained with
      [ -f "$(model "$2")/checkpoint_final.pth" ] || { echo "no model trained with patient$2 yet"; continue; }
      # Each result is made once (a rerun of score skips what is there).
      [ -f "$out/patient$1/synthesis_realism.json" ] ||
        python benchmarks/synthesis_real_patients.py --patients "$1" --model "$(model "$2")" -o "$out/patient$1"
      [ -f "$out/phantoms_with_p$2/synthesis.json" ] ||
        python benchmarks/synthesis_comparison.py -d 1 --model "$(model "$2")" -o "$out/phantoms_with_p$2"
    done
    ;;
  train-cue)
    [ -f "${ldiff_preprocessed:-ldiff_preprocessed}/$(dataset_name "$2")/plans.json" ] || "$0" prepare "$2"
    ldiff_results="$cue_results" OMP_NUM_THREADS=1 ldiff_train "3$2" 2d cond_synth -f all --pretrained-weights "$shipped" \
      --steps 1000 --lr 1e-4 --warmup-steps 50 --augmentation strong --validate-every 500 --checkpoint-every 100 \
      --num-workers 0 --lesion-level-cue ${CONTINUE:+--c}
    ;;
  score-cue)
    for pair in "07 19" "19 07"; do
      set -- $pair
      m="$(model "$2" "$cue_results")"
      [ -f "$m/checkpoint_final.pth" ] || { echo "no cued model trained with patient$2 yet"; continue; }
      for cue in default own own-half; do
        [ -f "$out/cue/patient$1_$cue/synthesis_realism.json" ] ||
          python benchmarks/synthesis_real_patients.py --patients "$1" --model "$m" --cue "$cue" -o "$out/cue/patient$1_$cue"
      done
      [ -f "$out/cue/phantoms_with_p$2/synthesis.json" ] ||
        python benchmarks/synthesis_comparison.py -d 1 --model "$m" -o "$out/cue/phantoms_with_p$2"
    done
    ;;
  train-phantoms)
    # The shipped model fine-tuned on Dataset001 alone (both patients held out), e.g. after the example
    # dataset's FLAIR lesion contrast was recalibrated (2026-12-06, ldiff/dataset/phantom_parameters.py).
    [ -f "${ldiff_preprocessed:-ldiff_preprocessed}/Dataset001_MSPhantom/plans.json" ] ||
      ldiff_plan_and_preprocess -d 1 --override "${plan_overrides[@]}"
    OMP_NUM_THREADS=1 ldiff_train 1 2d cond_synth -f all --pretrained-weights "$shipped" --steps "$steps" --lr 5e-5 \
      --warmup-steps 50 --augmentation strong --validate-every 400 --checkpoint-every 100 --num-workers 0 ${CONTINUE:+--c}
    ;;
  score-contrast)
    # Every trained model scored with the lesion contrast set after sampling (match: the training lesions')
    # and with the model's own (model): the phantom-only model on both patients, each patient's model on
    # the other patient; all on the example test phantoms.
    phantom_model="$results/Dataset001_MSPhantom/cond_synth__2d/fold_all"
    for mode in match model; do
      if [ -f "$phantom_model/checkpoint_final.pth" ]; then
        [ -f "$out/contrast_$mode/phantom_model/patients/synthesis_realism.json" ] ||
          python benchmarks/synthesis_real_patients.py --model "$phantom_model" --lesion-contrast "$mode" \
            -o "$out/contrast_$mode/phantom_model/patients"
        [ -f "$out/contrast_$mode/phantom_model/phantoms/synthesis.json" ] ||
          python benchmarks/synthesis_comparison.py -d 1 --model "$phantom_model" --lesion-contrast "$mode" \
            -o "$out/contrast_$mode/phantom_model/phantoms"
      fi
      for pair in "07 19" "19 07"; do
        set -- $pair  # $1 = the patient scored, $2 = the patient its model was trained with
        [ -f "$(model "$2")/checkpoint_final.pth" ] || continue
        [ -f "$out/contrast_$mode/with_p$2/patient$1/synthesis_realism.json" ] ||
          python benchmarks/synthesis_real_patients.py --patients "$1" --model "$(model "$2")" --lesion-contrast "$mode" \
            -o "$out/contrast_$mode/with_p$2/patient$1"
        [ -f "$out/contrast_$mode/with_p$2/phantoms/synthesis.json" ] ||
          python benchmarks/synthesis_comparison.py -d 1 --model "$(model "$2")" --lesion-contrast "$mode" \
            -o "$out/contrast_$mode/with_p$2/phantoms"
      done
    done
    ;;
  *) echo "usage: $0 prepare|train|train-cue 07|19, train-phantoms, or score|score-cue|score-contrast"; exit 2 ;;
esac
