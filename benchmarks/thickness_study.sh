#!/usr/bin/env bash
# Issue 11's study: does filling remove the lesions' bias on cortical thickness (ANTs DiReCT)?
#
#   bash benchmarks/thickness_study.sh phantoms   # example test cases: unfilled, truth, ldiff, classic fillers
#   bash benchmarks/thickness_study.sh patients   # patient07 and patient19 (no truth: change only)
#
# Phantoms: the first CASES (default 2) test cases of Dataset002_MSPhantomT1 (scripts/demo.sh builds it).
# Their lesion-free truth (healthyTs) is known, so each filler's remaining bias is measured. Methods: the
# unfilled scan, the same scan again under another name (the run-to-run variation of the thickness
# pipeline), the default ldiff model with its default sampling (ldiff_default) and with one axial draw (ldiff_one),
# and the classic fillers, every filler replacing the lesion mask dilated as the model's plan does (--dilate-like).
# Patients: the T1 of patient07 and patient19 of ../shared/data/open_ms_data (Lesjak et al. 2017, CC-BY;
# linked, never copied), their real lesions filled the same way; no truth, so change against unfilled only.
# PATIENTS (default "07 19") picks which: patient19 costs a third of patient07's time.
# Scans are on the MNI152 grid, so regions come from world coordinates (--regions mni).
# Every step resumes (--continue), so an interrupted study goes on where it stopped. DiReCT takes tens of
# minutes per 1 mm scan on one CPU core, so METHODS="unfilled ldiff_default" runs a first subset and a
# later run with more methods reuses the thickness maps already computed.
set -euo pipefail
cd "$(dirname "$0")/.."
raw="${ldiff_raw:-ldiff_raw}"
data="${OPEN_MS_DATA:-../shared/data/open_ms_data}"
out="${OUT:-benchmark_results/thickness}"
model="${MODEL:-ldiff/demo_models/t1_cond_fill}"
cases="${CASES:-2}"
classic=(patch biharmonic ringmedian slf nawm rim)

fill_all() {  # $1 = scans folder holding unfilled/ and masks/
  local s="$1" m
  ldiff_predict -i "$s/unfilled" --masks "$s/masks" -m "$model" -o "$s/ldiff_default" --continue
  ldiff_predict -i "$s/unfilled" --masks "$s/masks" -m "$model" -o "$s/ldiff_one" --views axial --num-samples 1 --continue
  # Which weights made the ldiff fills: the thickness tables name methods, this names the model.
  sha256sum "$model/checkpoint_final.pth" > "$s/ldiff_model.sha256"
  for m in "${classic[@]}"; do
    [ -d "$s/$m" ] || ldiff_fill_classic -i "$s/unfilled" --masks "$s/masks" -o "$s/$m" --method "$m" --dilate-like "$model"
  done
}

thickness() {  # $1 = scans folder, $2 = output folder, $3... = extra options
  local s="$1" o="$2"; shift 2
  local inputs=() names n
  # METHODS picks and orders the methods (unfilled first); a later run with more reuses the maps.
  read -r -a names <<< "${METHODS:-unfilled ldiff_default ldiff_one ${classic[*]} repeat}"
  for n in "${names[@]}"; do inputs+=(-i "$s/$n"); done
  ldiff_evaluate_thickness "${inputs[@]}" --names "${names[@]}" --regions mni -o "$o" --continue "$@"
}

case "${1:-}" in
  phantoms)
    d="$raw/Dataset002_MSPhantomT1"
    [ -d "$d/imagesTs" ] || { echo "needs $d (bash scripts/demo.sh builds it)"; exit 1; }
    s="$out/phantoms_scans"
    mkdir -p "$s/unfilled" "$s/repeat" "$s/truth" "$s/masks"
    for image in $(ls "$d/imagesTs"/*_0000.nii.gz | head -n "$cases"); do
      c=$(basename "$image" _0000.nii.gz)
      ln -sf "$(realpath "$image")" "$s/unfilled/${c}_0000.nii.gz"
      ln -sf "$(realpath "$image")" "$s/repeat/${c}_0000.nii.gz"
      ln -sf "$(realpath "$d/healthyTs/${c}_0000.nii.gz")" "$s/truth/${c}_0000.nii.gz"
      ln -sf "$(realpath "$d/labelsTs/$c.nii.gz")" "$s/masks/$c.nii.gz"
    done
    fill_all "$s"
    thickness "$s" "$out/phantoms" --truth "$s/truth"
    ;;
  patients)
    s="$out/patients_scans"
    mkdir -p "$s/unfilled" "$s/repeat" "$s/masks"
    read -r -a patients <<< "${PATIENTS:-07 19}"
    for p in "${patients[@]}"; do
      ln -sf "$(realpath "$data/patient$p/T1.nii.gz")" "$s/unfilled/patient${p}_0000.nii.gz"
      ln -sf "$(realpath "$data/patient$p/T1.nii.gz")" "$s/repeat/patient${p}_0000.nii.gz"
      ln -sf "$(realpath "$data/patient$p/lesion_mask.nii.gz")" "$s/masks/patient$p.nii.gz"
    done
    fill_all "$s"
    thickness "$s" "$out/patients"
    ;;
  *) echo "usage: $0 phantoms|patients"; exit 2 ;;
esac
