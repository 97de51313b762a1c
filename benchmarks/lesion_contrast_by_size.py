"""Lesion contrast by lesion size: real patients against the example phantoms.

    python benchmarks/lesion_contrast_by_size.py -o documentation/results/lesion_contrast_by_size

Each lesion's contrast per channel against the median of the normal-appearing white matter 2-5 mm
around it (:func:`ldiff.masks.rings.ring_contrasts`, the definition of the training fingerprint's
``lesion_contrast_by_volume`` and of the synthesis realism score), grouped in the fingerprint's volume
bins: the volume-weighted mean (as the realism score weights lesions), the mean over lesions (what the
fingerprint stores and synthesis matches each lesion to) and the median. For the real patients of
../shared/data/open_ms_data (Lesjak et al. 2017, *Neuroinformatics*, doi:10.1007/s12021-017-9348-7,
CC-BY; read in place; NAWM from a three-class split of T1w, as the score takes it) and the example
dataset's training and test cases (NAWM from their tissue maps). Writes lesion_contrast_by_size.md and
.json (command, commit, hardware, date).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.evaluation.benchmark.lesion_context import normal_appearing_wm, tissue_classes
from ldiff.evaluation.benchmark.report import provenance
from ldiff.io import atomic_path, save_json_atomic
from ldiff.masks.rings import ring_contrasts
from ldiff.planning.fingerprint import CONTRAST_VOLUME_BINS_MM3

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "open_ms_data"
CHANNELS = ("T1w", "FLAIR")
WM_LABEL = 3


def read(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image).astype(np.float64), image.GetSpacing()


def lesion_rows(t1: Path, flair: Path, label: Path, tissue: Path | None) -> list[list[float]]:
    """[volume mm^3, T1w fraction, FLAIR fraction] per lesion with a usable ring."""
    (t1_values, spacing), (flair_values, _) = read(t1), read(flair)
    lesion = read(label)[0] > 0
    if tissue is None:
        nawm = normal_appearing_wm(tissue_classes(t1_values, lesion), lesion, spacing)
    else:
        nawm = (read(tissue)[0] == WM_LABEL) & ~lesion
    voxel = float(np.prod(spacing))
    return [[voxels * voxel, *fractions.tolist()]
            for voxels, fractions in ring_contrasts(np.stack([t1_values, flair_values]), lesion, nawm, spacing)]


def by_bin(rows: list[list[float]]) -> list[dict]:
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 1 + len(CHANNELS))
    edges = CONTRAST_VOLUME_BINS_MM3
    entries = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = table[(table[:, 0] >= low) & (table[:, 0] < high)]
        entry = {"bin_mm3": [low, None if np.isinf(high) else high], "lesions": int(len(inside))}
        if len(inside):
            for c, name in enumerate(CHANNELS):
                values = inside[:, 1 + c]
                entry[name] = {"weighted_mean_pct": round(100 * float(np.average(values, weights=inside[:, 0])), 1),
                               "mean_pct": round(100 * float(np.mean(values)), 1),
                               "median_pct": round(100 * float(np.median(values)), 1)}
        entries.append(entry)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--patients", nargs="+", default=["07", "19"])
    parser.add_argument("--dataset", type=Path, default=REPO / "ldiff_raw" / "Dataset001_MSPhantom")
    parser.add_argument("-o", "--output", type=Path, required=True)
    arguments = parser.parse_args()
    sets = {}
    for patient in arguments.patients:
        folder = arguments.data / f"patient{patient}"
        sets[f"patient{patient}"] = lesion_rows(folder / "T1.nii.gz", folder / "FLAIR.nii.gz",
                                                folder / "lesion_mask.nii.gz", None)
    for split, title in (("Tr", "phantoms, training cases"), ("Ts", "phantoms, test cases")):
        rows = []
        for label in sorted((arguments.dataset / f"labels{split}").glob("*.nii.gz")):
            case = label.name[: -len(".nii.gz")]
            images = arguments.dataset / f"images{split}"
            rows += lesion_rows(images / f"{case}_0000.nii.gz", images / f"{case}_0001.nii.gz", label,
                                arguments.dataset / f"tissue{split}" / label.name)
        sets[title] = rows
    record = {**provenance("python benchmarks/lesion_contrast_by_size.py " + shlex.join(sys.argv[1:])),
              "sets": {name: by_bin(rows) for name, rows in sets.items()}}
    arguments.output.mkdir(parents=True, exist_ok=True)
    save_json_atomic(record, arguments.output / "lesion_contrast_by_size.json")
    bins = [entry["bin_mm3"] for entry in next(iter(record["sets"].values()))]
    header = " | ".join(f"{low:g}-{high:g} mm^3" if high else f">{low:g} mm^3" for low, high in bins)
    lines = ["# Lesion contrast by lesion size\n",
             f"Command: `{record['command']}`  \nCommit {record['commit']}, {record['hardware']}, {record['date']}.\n",
             "Contrast (%) of each lesion against the median of the NAWM 2-5 mm around it: volume-weighted mean "
             "/ mean / median over lesions (number of lesions).\n"]
    for channel in CHANNELS:
        lines += [f"## {channel}\n", f"| set | {header} |", "|---" * (len(bins) + 1) + "|"]
        for name, entries in record["sets"].items():
            cells = [f"{e[channel]['weighted_mean_pct']:+.1f} / {e[channel]['mean_pct']:+.1f} / "
                     f"{e[channel]['median_pct']:+.1f} ({e['lesions']})"
                     if e["lesions"] else "-" for e in entries]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    with atomic_path(arguments.output / "lesion_contrast_by_size.md") as temporary:
        temporary.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
