"""How bright a scan's healthy tissue and its lesions are relative to its normal-appearing white matter.

    python benchmarks/tissue_contrast.py -o documentation/results/synthesis_contrast_matching/tissue_contrast

Per channel: percentiles (5, 25, 50, 75, 95) of the brain's intensities and the median of the lesions,
each as % above the median of the NAWM (the three-class split of the T1w channel, lesions excluded),
for the real patients of ../shared/data/open_ms_data (Lesjak et al. 2017, *Neuroinformatics*,
doi:10.1007/s12021-017-9348-7, CC-BY; read in place) and for the example dataset's training lesions
(the medians of its cases' percentiles, from the synthesis model's shipped fingerprint.json). It shows
whether a channel's lesion contrast differs between datasets while its tissue contrast does not.
Writes tissue_contrast.md and .json (command, commit, hardware, date).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.evaluation.benchmark.lesion_context import tissue_classes
from ldiff.evaluation.benchmark.report import provenance
from ldiff.io import atomic_path, save_json_atomic

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "open_ms_data"
FINGERPRINT = REPO / "ldiff" / "demo_models" / "t1_flair_cond_synth" / "fingerprint.json"
FILES = {"T1w": "T1.nii.gz", "FLAIR": "FLAIR.nii.gz"}
PERCENTILES = (5, 25, 50, 75, 95)


def relative(values: list[float], reference: float) -> list[float]:
    return [round(100.0 * (v / reference - 1.0), 1) for v in values]


def patient_row(folder: Path) -> dict:
    def read(name: str) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name))).astype(np.float64)

    lesion = read("lesion_mask.nii.gz") > 0
    t1 = read(FILES["T1w"])
    classes = tissue_classes(t1, lesion)
    brain, nawm = classes > 0, (classes == 3) & ~lesion
    row = {}
    for channel, name in FILES.items():
        image = t1 if channel == "T1w" else read(name)
        level = float(np.median(image[nawm]))
        row[channel] = {"brain_percentiles": relative(list(np.percentile(image[brain], PERCENTILES)), level),
                        "lesion_median": relative([float(np.median(image[lesion]))], level)[0]}
    return row


def fingerprint_row(path: Path) -> dict:
    medians = json.loads(path.read_text(encoding="utf-8"))["intensity_median_of_cases"]
    row = {}
    for channel, regions in medians.items():
        level = regions["nawm"]["50"]
        row[channel] = {"brain_percentiles": relative([regions["brain"][str(p)] for p in PERCENTILES], level),
                        "lesion_median": relative([regions["lesion"]["50"]], level)[0]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--patients", nargs="+", default=["07", "19"])
    parser.add_argument("-o", "--output", type=Path, required=True)
    arguments = parser.parse_args()
    rows = {"example dataset (training fingerprint)": fingerprint_row(FINGERPRINT)}
    for patient in arguments.patients:
        rows[f"patient{patient}"] = patient_row(arguments.data / f"patient{patient}")
    record = {**provenance("python benchmarks/tissue_contrast.py " + shlex.join(sys.argv[1:])), "rows": rows}
    arguments.output.mkdir(parents=True, exist_ok=True)
    save_json_atomic(record, arguments.output / "tissue_contrast.json")
    lines = [f"# Tissue and lesion intensities relative to the NAWM median (%)\n",
             f"Command: `{record['command']}`  \nCommit {record['commit']}, {record['hardware']}, {record['date']}.\n",
             "| scans | channel | brain p5 | p25 | p50 | p75 | p95 | lesion median |", "|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        for channel, values in row.items():
            cells = " | ".join(f"{v:+.1f}" for v in values["brain_percentiles"])
            lines.append(f"| {name} | {channel} | {cells} | {values['lesion_median']:+.1f} |")
    with atomic_path(arguments.output / "tissue_contrast.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
