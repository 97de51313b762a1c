"""How wide a scan's intensity range is against its typical brain level, and what lesions do to it.

    python benchmarks/intensity_range.py -o documentation/results/synthesis_case_matching/intensity_range

Lesion-contrast matching once set a contrast as a share of the normaliser's range (brain percentiles
0.5 to 99.5); that share means a larger contrast in % on a scan whose range is wide against its tissue
level. Per channel: (p99.5 - p0.5) / median of the brain, with all brain voxels and with the lesions
and 2 voxels around them left out, for the real patients of ../shared/data/open_ms_data (Lesjak et al.
2017, *Neuroinformatics*, doi:10.1007/s12021-017-9348-7, CC-BY; read in place) and the example
dataset's test cases (healthy twins). For the test cases also the median of all tissue 2-5 mm around
the lesions against the median of the WM there (tissue map): the reference that matching measures
against, against the one the score uses. Writes intensity_range.md and .json (command, commit,
hardware, date).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ldiff.evaluation.benchmark.report import provenance
from ldiff.io import atomic_path, save_json_atomic
from ldiff.masks import dilate_mask

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "open_ms_data"
CHANNELS = {"T1w": ("T1.nii.gz", "_0000.nii.gz"), "FLAIR": ("FLAIR.nii.gz", "_0001.nii.gz")}
WM_LABEL = 3


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)


def range_ratio(image: np.ndarray, region: np.ndarray) -> float:
    low, high = np.percentile(image[region], [0.5, 99.5])
    return round(float((high - low) / np.median(image[region])), 3)


def ratios(images: dict[str, np.ndarray], lesion: np.ndarray, brain: np.ndarray) -> dict:
    away = brain & ~ndimage.binary_dilation(lesion, iterations=2)
    return {name: {"all": range_ratio(image, brain), "lesions_left_out": range_ratio(image, away)}
            for name, image in images.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--patients", nargs="+", default=["07", "19"])
    parser.add_argument("--dataset", type=Path, default=REPO / "ldiff_raw" / "Dataset001_MSPhantom")
    parser.add_argument("-o", "--output", type=Path, required=True)
    arguments = parser.parse_args()
    rows, shells = {}, {}
    for patient in arguments.patients:
        folder = arguments.data / f"patient{patient}"
        images = {name: read(folder / files[0]) for name, files in CHANNELS.items()}
        brain = (images["T1w"] > 0) & (images["FLAIR"] > 0)
        rows[f"patient{patient}"] = ratios(images, read(folder / "lesion_mask.nii.gz") > 0, brain)
    for label in sorted((arguments.dataset / "labelsTs").glob("*.nii.gz")):
        case = label.name[: -len(".nii.gz")]
        images = {name: read(arguments.dataset / "healthyTs" / f"{case}{files[1]}") for name, files in CHANNELS.items()}
        lesion, tissue = read(label) > 0, read(arguments.dataset / "tissueTs" / label.name)
        rows[case] = ratios(images, lesion, tissue > 0)
        near = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=2.0)
        shell = dilate_mask(lesion, spacing=(1.0, 1.0, 1.0), shape="ball", radius_mm=5.0) & ~near & (tissue > 0)
        shells[case] = {name: round(float(np.median(image[shell]) / np.median(image[shell & (tissue == WM_LABEL)])), 3)
                        for name, image in images.items()}
    record = {**provenance("python benchmarks/intensity_range.py " + shlex.join(sys.argv[1:])),
              "range_over_median": rows, "tissue_shell_over_wm_shell": shells}
    arguments.output.mkdir(parents=True, exist_ok=True)
    save_json_atomic(record, arguments.output / "intensity_range.json")
    lines = ["# Intensity range against the brain median\n",
             f"Command: `{record['command']}`  \nCommit {record['commit']}, {record['hardware']}, {record['date']}.\n",
             "(p99.5 - p0.5) / median of the brain; second value with the lesions and 2 voxels around them left out.\n",
             "| scan | T1w | FLAIR |", "|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]['all']:.2f} ({row[c]['lesions_left_out']:.2f})" for c in CHANNELS) + " |")
    lines += ["", "Test cases: median of all tissue 2-5 mm around the lesions / median of the WM there (healthy twins).\n",
              "| case | T1w | FLAIR |", "|---|---|---|"]
    for name, row in shells.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in CHANNELS) + " |")
    with atomic_path(arguments.output / "intensity_range.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
