#!/usr/bin/env bash
# The main job on a fresh machine, on the embedded example dataset:
#   install ldiff; build the example dataset; verify, fingerprint, plan and preprocess it;
#   fill the held-out test cases' lesions with the shipped T1w demo model and with the six classic
#   fillers; evaluate all of them against the lesion-free truth; print the comparison table and
#   write the preview PNGs and the bar plot (benchmark_results/demo/).
# DEMO_CASES (default 3) sets how many test cases are filled; all 6 take about twice as long.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
raw="${ldiff_raw:-ldiff_raw}"
if [ ! -f "$raw/Dataset001_MSPhantom/dataset.json" ]; then
  ldiff_make_example
else
  echo "Dataset001_MSPhantom already exists: reusing it (ldiff_make_example --overwrite rebuilds it)."
fi
ldiff_plan_and_preprocess -d 001
python3 -m ldiff.planning.summary -d 001
# The demo model takes a T1w image only (what FSL lesion_filling and FastSurfer-LIT take).
if [ ! -f "$raw/Dataset002_MSPhantomT1/dataset.json" ]; then
  ldiff_select_channels -d 001 --channels T1w -o Dataset002_MSPhantomT1
fi
# The plan printed above is Dataset001's (what training would use); the fills below use the demo
# model's own plan, carried in its model.json:
python3 -m ldiff.planning.summary -m ldiff/demo_models/t1_cond_fill
echo "Filling ${DEMO_CASES:-3} test case(s) with the demo model (its default: DPM-Solver++ 3 steps, one draw along each"
echo "of the three views, averaged; and one draw along the axial view alone, a single realistic sample) and six classic"
# The estimate sums the seconds per case of every method in the last full run of this comparison
# (documentation/results/fill_comparison_views, one torch thread; the demo uses both cores).
python3 - "${DEMO_CASES:-3}" <<'PY'
import json, sys
record = json.load(open("documentation/results/fill_comparison_views/comparison.json"))
per_case = sum(row["seconds/case"] for row in record["rows"])
print(f"fillers, then scoring: about {max(1, round(int(sys.argv[1]) * per_case / 60))} minute(s) plus scoring, from "
      f"{per_case:.0f} s per case measured on {record['provenance']['hardware']} "
      f"({record['provenance']['date']}, documentation/results/fill_comparison_views).")
PY
python3 benchmarks/fill_comparison.py -d 2 --models ldiff/demo_models/t1_cond_fill --cases "${DEMO_CASES:-3}" \
  --variants default views=axial,num_samples=1 -o benchmark_results/demo
echo "Previews and the bar plot: benchmark_results/demo/"
