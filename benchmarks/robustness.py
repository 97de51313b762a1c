"""Does a fill model hold up on scans unlike its training data? Fills of perturbed test cases.

    python benchmarks/robustness.py -d 2 --model ldiff/demo_models/t1_cond_fill --cases 2

The example dataset's test cases are altered the way another scanner or protocol alters a scan,
identically in the input (with lesions) and in its lesion-free truth, and filled by the ldiff model
and by the two best classic fillers (``patch``, ``biharmonic``). The perturbations, applied inside
the brain (the images are skull-stripped: background stays 0):

- ``gamma_0.6`` / ``gamma_1.6``: ``x -> max * (x / max) ** gamma``, a different grey/white contrast;
- ``noise_x3``: Rician noise of standard deviation 4 % of the brain's 99th percentile (the
  example data has 1-3 %), the same noise in the input and the truth;
- ``bias_30``: a linear bias field from 0.85 to 1.15 along the left-right axis;
- ``scale``: ``0.05 x + 200``, other units and an offset (the normalisation should make it a no-op).

Every method replaces the same region (the lesion masks dilated by the model's planned dilation) and is
scored inside it (thesis protocol: [-1, 1], SSIM 7x7 data range 2, PSNR 10 log10(4 / MSE)).
Writes ``robustness.md`` and ``robustness.csv`` to ``--output``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from fill_comparison import folder_name, variant_options, result_provenance, write_dilated_masks, write_report
from ldiff import paths
from ldiff.dataset.raw import RawDataset
from ldiff.evaluation.classic.files import fill_classic_files
from ldiff.evaluation.evaluate import evaluate_folder, format_table
from ldiff.io.model_files import read_model_json
from ldiff.io import array_to_image, read_image, write_image_atomic
from ldiff.io.images import Geometry

CLASSIC = ("patch", "biharmonic")
HEADER = ["perturbation", "method", "seconds/case", "thesis ssim_in", "thesis psnr_in"]


# Each perturbation is f(volume, brain, rng, truth): statistics come from the lesion-free truth, so that
# the input and its truth are changed by the same function.
Perturbation = Callable[[np.ndarray, np.ndarray, np.random.Generator, np.ndarray], np.ndarray]


def _gamma(gamma: float) -> Perturbation:
    def apply(volume: np.ndarray, brain: np.ndarray, rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
        top = float(truth[brain].max())
        result = volume.copy()
        result[brain] = top * np.clip(volume[brain] / top, 0.0, None) ** gamma
        return result
    return apply


def _noise(volume: np.ndarray, brain: np.ndarray, rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    sigma = 0.04 * float(np.percentile(truth[brain], 99))
    real = volume + rng.normal(0.0, sigma, volume.shape)
    imaginary = rng.normal(0.0, sigma, volume.shape)
    return np.where(brain, np.sqrt(real ** 2 + imaginary ** 2), volume)


def _bias(volume: np.ndarray, brain: np.ndarray, rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    field = np.linspace(0.85, 1.15, volume.shape[2])[None, None, :]  # x is the last array axis
    return np.where(brain, volume * field, volume)


def _scale(volume: np.ndarray, brain: np.ndarray, rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    return np.where(brain, 0.05 * volume + 200.0, volume)


PERTURBATIONS = {"none": None, "gamma_0.6": _gamma(0.6), "gamma_1.6": _gamma(1.6), "noise_x3": _noise,
                 "bias_30": _bias, "scale": _scale}


def perturbed_copy(source: Path, truth: np.ndarray, perturbation: Perturbation | None, seed: int, target: Path) -> None:
    """Writes ``perturbation(source)`` (float32) with the source's geometry; the noise depends on ``seed`` only."""
    image = read_image(source)
    volume = sitk.GetArrayFromImage(image).astype(np.float64)
    if perturbation is not None:
        volume = perturbation(volume, truth > 0, np.random.default_rng(seed), truth)
    write_image_atomic(array_to_image(volume.astype(np.float32), Geometry.of(image)), target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--dataset", default="2", help="raw dataset with imagesTs, labelsTs, healthyTs")
    parser.add_argument("--model", required=True, type=Path, help="a cond_fill model folder")
    parser.add_argument("--perturbations", nargs="+", default=list(PERTURBATIONS), choices=list(PERTURBATIONS))
    parser.add_argument("--sampler", default=None, help="default: the model's own, as ldiff_predict")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--views", default=None, help="e.g. axial, or all (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--variants", nargs="+", default=["default"],
                        help="ldiff sampling variants, one row each: default or key=value,... as in ldiff_benchmark's "
                             "method specs (e.g. standardise=false)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", type=int, default=2, help="the first N test cases")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmark_results/robustness"))
    arguments = parser.parse_args()

    from ldiff.inference.predictor import Predictor

    name = paths.find_dataset_name(arguments.dataset, [paths.raw_root()])
    dataset = RawDataset(paths.raw_root() / name)
    cases = dataset.cases("Ts")[: arguments.cases]
    if not cases or cases[0].healthy_files is None:
        raise SystemExit(f"{dataset.folder} needs imagesTs, labelsTs and healthyTs (ldiff_make_example writes them).")
    description = read_model_json(arguments.model)
    channels = [dataset.channel_names.index(channel) for channel in description["channel_names"]]
    radius = int(description["mask_dilation"]["radius_voxels"])
    masks = write_dilated_masks(dataset, cases, radius, arguments.output / "masks")
    predictors = {}  # label -> Predictor, one per variant
    for variant in arguments.variants:
        options = {"sampler": arguments.sampler, "steps": arguments.steps, "batch_size": arguments.batch_size,
                   "num_samples": arguments.num_samples, "views": arguments.views, **variant_options(variant)}
        label = "ldiff" if variant == "default" else f"ldiff@{variant}"
        predictors[label] = Predictor.from_folder(arguments.model, device=arguments.device, **options)
    sampling = "; ".join(f"{label}: {predictor.describe_sampling()}" for label, predictor in predictors.items())

    rows = []
    for perturbation_name in arguments.perturbations:
        perturbation = PERTURBATIONS[perturbation_name]
        folder = arguments.output / perturbation_name
        inputs, references = folder / "inputs", folder / "references"
        for number, case in enumerate(cases):
            for index in channels:
                truth = sitk.GetArrayFromImage(read_image(case.healthy_files[index])).astype(np.float64)
                for source, target in ((case.image_files[index], inputs), (case.healthy_files[index], references)):
                    perturbed_copy(source, truth, perturbation, seed=1000 * number + index,
                                   target=target / case.image_files[index].name)
        timings = {}
        for method in CLASSIC:
            start = time.perf_counter()
            fill_classic_files(inputs, folder / method, method=method, masks_dir=masks, progress=False)
            timings[method] = (time.perf_counter() - start) / len(cases)
        for model_label, predictor in predictors.items():
            start = time.perf_counter()
            for case in cases:
                images = [read_image(inputs / case.image_files[index].name) for index in channels]
                lesion = sitk.GetArrayFromImage(read_image(case.label_file)) > 0
                result = predictor.predict(images, lesion, seed=0)
                for index, image in zip(channels, result.images):
                    write_image_atomic(image, folder / folder_name(model_label) / case.image_files[index].name)
            timings[model_label] = (time.perf_counter() - start) / len(cases)
        for method, seconds in timings.items():
            result = evaluate_folder(references, folder / folder_name(method), masks, lpips=False, num_processes=1)
            aggregate = result["aggregate"]["thesis"]
            rows.append([perturbation_name, method, seconds, aggregate["ssim_in"]["mean"], aggregate["psnr_in"]["mean"]])
        print(format_table(rows[-len(timings):], HEADER))

    summary = (f"Dataset {name}, {len(cases)} test cases, model {arguments.model} ({sampling}); perturbed inputs and truths; region: lesion masks dilated by {radius} "
               f"voxel(s); thesis protocol.")
    table = write_report(arguments.output, "robustness", summary, HEADER, rows, result_provenance([Path(arguments.model)]))
    print(summary)
    print(table)


if __name__ == "__main__":
    main()
