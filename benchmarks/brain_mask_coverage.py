"""How much of each patient's lesion mask the derived brain mask holds, with the rule before and after
2026-12-08 (documentation/benchmark.md, "Brain mask of resampled scans").

    python benchmarks/brain_mask_coverage.py -o documentation/results/brain_mask_coverage

Before: "above the minimum" only when the background sits at the image minimum, else Otsu's threshold
(then largest component, holes filled). After: ``derive_brain_mask`` as it is now. Patients:
../shared/data/open_ms_data (Lesjak et al. 2017, *Neuroinformatics*, doi:10.1007/s12021-017-9348-7,
CC-BY; read in place, never copied). Writes brain_mask_coverage.md and .json (command, commit, hardware, date).
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
from ldiff.preprocessing.brain_masks import derive_brain_mask, largest_component, otsu_threshold

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "open_ms_data"


def brain_before(image: np.ndarray) -> np.ndarray:
    """The rule before 2026-12-08, for comparison only."""
    minimum = image.min()
    foreground = image > minimum if np.mean(image == minimum) >= 0.05 else image > otsu_threshold(image)
    return ndimage.binary_fill_holes(largest_component(foreground))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--patients", nargs="+", default=["07", "19"])
    parser.add_argument("-o", "--output", type=Path, required=True)
    arguments = parser.parse_args()
    rows = []
    for patient in arguments.patients:
        folder = arguments.data / f"patient{patient}"
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "T1.nii.gz"))).astype(np.float64)
        lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lesion_mask.nii.gz"))) > 0
        before, after = brain_before(image), derive_brain_mask(image)
        rows.append({"patient": patient, "minimum": float(image.min()), "zero_fraction": float(np.mean(image == 0)),
                     "lesion_voxels": int(lesion.sum()),
                     "lesion_outside_brain_before": int((lesion & ~before).sum()),
                     "lesion_outside_brain_after": int((lesion & ~after).sum()),
                     "brain_voxels_before": int(before.sum()), "brain_voxels_after": int(after.sum())})
    record = provenance(" ".join(["python", *map(shlex.quote, sys.argv)]), [])
    lines = ["# Lesion voxels outside the derived brain mask", "",
             *(f"- {key}: {value}" for key, value in record.items() if key != "models"), "",
             "| patient | image minimum | share of voxels at 0 | lesion voxels | outside the brain, before | after | "
             "brain voxels, before | after |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['patient']} | {r['minimum']:.1f} | {r['zero_fraction']:.3f} | {r['lesion_voxels']} | "
              f"{r['lesion_outside_brain_before']} | {r['lesion_outside_brain_after']} | {r['brain_voxels_before']} | "
              f"{r['brain_voxels_after']} |" for r in rows]
    arguments.output.mkdir(parents=True, exist_ok=True)
    with atomic_path(arguments.output / "brain_mask_coverage.md") as path:
        path.write_text("\n".join(lines) + "\n")
    save_json_atomic({**record, "rows": rows}, arguments.output / "brain_mask_coverage.json")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
