"""Where the in-mask error of each filler comes from: the level of each lesion, or what is left.

    python benchmarks/fill_error_parts.py --patient 07 -o documentation/results/fill_error_parts/patient07 \
        --methods ldiff:benchmark_results/models/demo_phantoms patch biharmonic ringmedian
    python benchmarks/fill_error_parts.py --dataset 002 -o documentation/results/fill_error_parts/phantoms ...

On ldiff_benchmark's transplanted lesions (the same cases, built with the same seeds; truth = the real
tissue), for each method and case:

- thesis-protocol PSNR in the region every method replaces (the mask dilated by ``--dilate-mm``);
- ``bias``: the mean of (fill - truth) there, and ``shell``: the mean of (input - truth) in the one
  voxel just outside it (what the lesions' painted partial-volume rim leaves in the context a filler
  reads);
- ``PSNR, level removed``: PSNR after subtracting, per 26-connected region, the fill's own mean error
  (what the fill would score with each lesion's level right and its structure as it is).

With ``biharmonic`` and an ldiff method among the methods, a derived row ``biharmonic at <method>'s
level``: the biharmonic fill shifted per region to the ldiff fill's mean (the smooth solve's structure,
the model's level; no extra network call), to see what the two parts are worth together.
And two oracles that know the truth, as bounds of what a fill can reach: each region filled with its
true mean (``oracle: true level``), and the truth smoothed by a Gaussian of sigma 1 or 2 voxels.
Patients: ../shared/data/open_ms_data (Lesjak et al. 2017, *Neuroinformatics*,
doi:10.1007/s12021-017-9348-7, CC-BY; read in place, never copied). Writes fill_error_parts.md and
.json (command, commit, hardware, date, checkpoint hashes).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from ldiff.evaluation.benchmark.cases import dataset_cases, load_case, single_case
from ldiff.evaluation.benchmark.lesion_context import WM_CLASS, tissue_classes
from ldiff.evaluation.benchmark.methods import MethodRunner, parse_method
from ldiff.evaluation.benchmark.report import provenance
from ldiff.evaluation.benchmark.runner import case_seed, score_channel
from ldiff.evaluation.benchmark.transplant import TransplantSettings, make_transplanted_case
from ldiff.io import atomic_path, save_json_atomic
from ldiff.masks import dilate_mask

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "open_ms_data"
FULL = np.ones((3, 3, 3), bool)


def psnr(values: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    return float(score_channel(values, truth, region, False)["thesis_psnr_in"])


def level_removed(values: np.ndarray, truth: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """``values`` with each labelled region's mean error against ``truth`` subtracted."""
    result = values.copy()
    for index in range(1, count + 1):
        inside = labels == index
        result[inside] -= float(np.mean(values[inside] - truth[inside]))
    return result


def shifted_to_level(values: np.ndarray, level_of: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """``values`` with each labelled region shifted so that its mean is ``level_of``'s there."""
    result = values.copy()
    for index in range(1, count + 1):
        inside = labels == index
        result[inside] += float(np.mean(level_of[inside]) - np.mean(values[inside]))
    return result


def case_rows(case_name: str, truth: np.ndarray, painted: np.ndarray, region: np.ndarray,
              fills: dict[str, np.ndarray]) -> list[dict]:
    labels, count = ndimage.label(region, structure=FULL)
    shell = ndimage.binary_dilation(region, structure=FULL) & ~region
    rows = []
    true_level = truth.copy()
    for index in range(1, count + 1):
        true_level[labels == index] = truth[labels == index].mean()
    oracles = {"oracle: true level": true_level}
    for sigma in (1, 2):
        smooth = truth.copy()
        smooth[region] = ndimage.gaussian_filter(truth, sigma)[region]
        oracles[f"oracle: truth smoothed, sigma {sigma}"] = smooth
    derived = {f"biharmonic at {method}'s level": shifted_to_level(fills["biharmonic"], values, labels, count)
               for method, values in fills.items() if method.startswith("ldiff") and "biharmonic" in fills}
    for method, values in {**fills, **derived, **oracles}.items():
        error = values[region] - truth[region]
        rows.append({"case": case_name, "method": method, "psnr": psnr(values, truth, region),
                     "psnr_level_removed": psnr(level_removed(values, truth, labels, count), truth, region),
                     "bias": float(error.mean()), "rmse": float(np.sqrt(np.mean(error ** 2))),
                     "shell": float(np.mean(painted[shell] - truth[shell])),
                     "wm_level": float(np.median(truth[shell]))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--patient", help="a patient of --data, e.g. 07")
    source.add_argument("--dataset", help="a raw dataset's test cases (T1w in channel 0), e.g. 002")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--methods", nargs="+", required=True, help="as ldiff_benchmark --methods")
    parser.add_argument("--dilate-mm", type=float, default=2.0, help="the replaced region (ldiff's planned 2 mm)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    arguments = parser.parse_args()
    if arguments.patient:
        folder = arguments.data / f"patient{arguments.patient}"
        cases = [single_case([folder / "T1.nii.gz"], folder / "lesion_mask.nii.gz")]
    else:
        cases = dataset_cases(arguments.dataset, "Ts")[0]
    runners = [MethodRunner(parse_method(spec)) for spec in arguments.methods]
    rows = []
    for benchmark_case in cases:
        loaded = load_case(benchmark_case)
        spacing = loaded.geometry.spacing
        # The same transplanted case as ldiff_benchmark with seed 0 builds.
        case = make_transplanted_case(loaded.images, loaded.lesion, spacing,
                                      np.random.default_rng(case_seed(0, loaded.name)), 0, None, TransplantSettings())
        region = dilate_mask(case.mask, spacing=spacing, radius_mm=arguments.dilate_mm)
        wm = tissue_classes(case.images[0], region) == WM_CLASS
        fills = {}
        for runner in runners:
            filled, _ = runner.fill(case.images, case.mask, region, wm, loaded.geometry, [0], 0, loaded.name)
            fills[runner.spec.label] = filled[0]
        rows += case_rows(loaded.name, case.truth[0], case.images[0], region, fills)
        print(f"{loaded.name}: done", flush=True)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    summary = []
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        summary.append({"method": method, **{key: float(np.mean([row[key] for row in mine]))
                                              for key in ("psnr", "psnr_level_removed", "bias", "rmse", "shell",
                                                          "wm_level")}})
    record = provenance(" ".join(["python", *map(shlex.quote, sys.argv)]),
                        [r.predictor(1).model.folder for r in runners if r.spec.is_ldiff])
    lines = [f"# Error parts of in-mask fills: {arguments.patient and 'patient' + arguments.patient or 'dataset ' + arguments.dataset}",
             "", *(f"- {key}: {value}" for key, value in record.items() if key != "models"), "",
             f"Mean over {len(cases)} case(s); intensities in the scan's units (WM level around the regions: "
             f"{np.mean([row['wm_level'] for row in rows if row['method'] == methods[0]]):.0f}).", "",
             "| method | PSNR (dB) | PSNR, level removed | bias | RMSE | shell (input - truth) |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['method']} | {s['psnr']:.2f} | {s['psnr_level_removed']:.2f} | {s['bias']:+.1f} | {s['rmse']:.1f} | "
              f"{s['shell']:+.1f} |" for s in summary]
    arguments.output.mkdir(parents=True, exist_ok=True)
    with atomic_path(arguments.output / "fill_error_parts.md") as path:
        path.write_text("\n".join(lines) + "\n")
    save_json_atomic({**record, "summary": summary, "rows": rows}, arguments.output / "fill_error_parts.json")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
