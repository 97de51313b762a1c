#!/usr/bin/env bash
# ldiff_benchmark on the two real MS patients of ../shared/data/open_ms_data (Lesjak et al. 2017,
# CC-BY; read in place, never copied) and on the example dataset's test cases. Every model scored on
# a patient never saw that patient in training:
#   demo       ldiff/demo_models/t1_cond_fill (phantoms of the MNI152 template only)
#   ft_p19     the demo model fine-tuned on patient19 only  -> scored on patient07
#   ft_p07     the demo model fine-tuned on patient07 only  -> scored on patient19
# The fine-tunes (600 steps, one CPU thread, about 15 minutes each) are made by
#   bash benchmarks/real_patients.sh finetune
# Results: benchmark_results/real_patients/{patient07,patient19,phantoms}/ (benchmark.md, .csv, .json,
# .png, previews). `bash benchmarks/real_patients.sh transplanted real phantoms` runs only those parts.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
out="${OUT:-benchmark_results/real_patients}"
demo=ldiff/demo_models/t1_cond_fill
results="${ldiff_results:-ldiff_results}"
ft() { echo "$results/Dataset0$1_OpenMSp$1T1/cond_fill__2d/fold_all"; }
# The demo model's network and plan (its TRAINING.md), with its 2 mm mask dilation.
plan_overrides=("2d.patch_size=[64,64]" 2d.network.num_levels=4 "2d.network.channels=[32,64,128,128]" 2d.batch_size=16
                diffusion.prediction_type=v_prediction mask_dilation.radius_voxels=2)

if [ "${1:-}" = "finetune" ]; then
  raw="${ldiff_raw:-ldiff_raw}"
  for p in 07 19; do
    d="$raw/Dataset0${p}_OpenMSp${p}T1"
    mkdir -p "$d/imagesTr" "$d/labelsTr"
    ln -sf "$(realpath "$data/patient$p/T1.nii.gz")" "$d/imagesTr/patient${p}_0000.nii.gz"
    ln -sf "$(realpath "$data/patient$p/lesion_mask.nii.gz")" "$d/labelsTr/patient${p}.nii.gz"
    printf '{"channel_names": {"0": "T1w"}, "labels": {"background": 0, "lesion": 1}, "numTraining": 1, "file_ending": ".nii.gz"}\n' > "$d/dataset.json"
    ldiff_plan_and_preprocess -d "$p" --override "${plan_overrides[@]}"
    OMP_NUM_THREADS=1 ldiff_train "$p" 2d cond_fill -f all --pretrained-weights "$demo" --steps 600 --lr 5e-5 \
      --warmup-steps 50 --augmentation strong --validate-every 300 --checkpoint-every 100 --num-workers 0
  done
  exit 0
fi

parts="${*:-transplanted real phantoms}"
classic=(biharmonic patch ringmedian slf nawm rim)
variants() {  # the sampling settings compared for one model folder
  echo "ldiff:$1" "ldiff:$1@num_samples=1" "ldiff:$1@sampler=dpm_solver,steps=10,num_samples=4" \
       "ldiff:$1@sampler=ddim,steps=25,num_samples=1"
}
# Transplanted lesions: every sampling variant, every classic filler.
want() { [[ " $parts " == *" $1 "* ]]; }
if want transplanted; then for pair in "07 19" "19 07"; do
  set -- $pair
  ldiff_benchmark -i "$data/patient$1/T1.nii.gz" --mask "$data/patient$1/lesion_mask.nii.gz" --channel-names T1w \
    -o "$out/patient$1" --methods $(variants "$demo") $(variants "$(ft "$2")") "${classic[@]}" --no-real-lesions
done; fi
# Real lesions (no truth) and the time of the defaults.
if want real; then for pair in "07 19" "19 07"; do
  set -- $pair
  ldiff_benchmark -i "$data/patient$1/T1.nii.gz" --mask "$data/patient$1/lesion_mask.nii.gz" --channel-names T1w \
    -o "$out/patient$1_real" --methods "ldiff:$demo" "ldiff:$(ft "$2")" "${classic[@]}" --no-lpips
done; fi
# The example dataset's test cases (phantoms; needs ldiff_make_example and Dataset002, see scripts/demo.sh).
if want phantoms; then
  ldiff_benchmark -d 002 --split Ts -o "$out/phantoms" --methods $(variants "$demo") "${classic[@]}" --no-real-lesions
fi
