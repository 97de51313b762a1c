"""Would histogram standardisation at prediction help? ldiff_benchmark with the model's input mapped to its training landmarks.

    python benchmarks/intensity_standardisation.py --landmarks-from PREPROCESSED_FOLDER LDIFF_BENCHMARK_ARGUMENTS...
    python benchmarks/intensity_standardisation.py --landmarks-from PREPROCESSED_FOLDER --fill-comparison ARGUMENTS...

(the second runs benchmarks/fill_comparison.py instead: a dataset's test cases with their own lesions)

An experiment, not a feature (yet). The real scans' brain-intensity histograms, after ldiff's percentile
normalisation, differ from those of the phantoms a model was trained on (patient07's brain median sits at
0.45 in the model's [-1, 1] space, the training phantoms' at 0.26). Nyúl-Udupa standardisation (Nyúl &
Udupa 1999, *Magn Reson Med* 42:1072; Nyúl et al. 2000, *IEEE TMI* 19:143) maps a scan's intensity
landmarks piecewise-linearly onto the training set's. Here the landmarks are the brain's percentiles
:data:`PERCENTILES` of channel 0 after normalisation; the target is their mean over the preprocessed cases
(``.npz`` with ``image`` and ``brain``) in ``--landmarks-from`` (the model's training data). The mapping is
applied inside the brain after ``preprocess_images`` and inverted before ``restore_to_original``, so the
fill comes back in the scan's own units and every voxel outside the mask is untouched. Both functions are
replaced in the predictor's namespace only: the benchmark's own cases, tissue split and scoring are unchanged,
so a run with and one without it score the same transplanted cases. Patients: ../shared/data/open_ms_data
(Lesjak et al. 2017, *Neuroinformatics*, doi:10.1007/s12021-017-9348-7, CC-BY), read in place.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import ldiff.inference.predictor as predictor
from ldiff.cli.benchmark import main

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def training_landmarks(folder: Path) -> np.ndarray:
    """Mean over the preprocessed cases in ``folder`` of channel 0's brain percentiles."""
    landmarks = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as arrays:
            if {"image", "brain"} <= set(arrays.files):
                landmarks.append(np.percentile(arrays["image"][0][arrays["brain"].astype(bool)], PERCENTILES))
    if not landmarks:
        sys.exit(f"{folder}: no preprocessed case (.npz with image and brain).")
    return np.mean(landmarks, axis=0)


def install(target: np.ndarray) -> None:
    """Wrap the predictor's preprocessing and restoration with the mapping onto ``target`` and its inverse."""
    preprocess, restore = predictor.preprocess_images, predictor.restore_to_original
    mapping: dict[str, np.ndarray] = {}

    def preprocess_standardised(*arguments, **options):
        arrays, properties = preprocess(*arguments, **options)
        image, brain = arrays["image"], arrays["brain"].astype(bool)
        source = np.percentile(image[0][brain], PERCENTILES)
        mapping["from"] = np.concatenate([[-1.0], source, [1.0]])
        mapping["to"] = np.concatenate([[-1.0], target, [1.0]])
        channel = image[0].copy()
        channel[brain] = np.interp(channel[brain], mapping["from"], mapping["to"])
        arrays["image"] = np.concatenate([channel[None], image[1:]]).astype(image.dtype)
        return arrays, properties

    def restore_unstandardised(array, properties, channel, is_mask=False):
        if channel == 0 and not is_mask and mapping:
            array = np.interp(array, mapping["to"], mapping["from"]).astype(array.dtype)
        return restore(array, properties, channel, is_mask)

    predictor.preprocess_images, predictor.restore_to_original = preprocess_standardised, restore_unstandardised


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--landmarks-from":
        sys.exit("usage: python benchmarks/intensity_standardisation.py --landmarks-from FOLDER LDIFF_BENCHMARK_ARGUMENTS...")
    landmarks = training_landmarks(Path(sys.argv[2]))
    print("training landmarks (percentiles " + ", ".join(map(str, PERCENTILES)) + "): "
          + ", ".join(f"{value:.3f}" for value in landmarks), flush=True)
    install(landmarks)
    if sys.argv[3:4] == ["--fill-comparison"]:
        import runpy

        script = Path(__file__).resolve().parent / "fill_comparison.py"
        sys.argv = [str(script), *sys.argv[4:]]
        runpy.run_path(str(script), run_name="__main__")
    else:
        sys.argv = ["ldiff_benchmark", *sys.argv[3:]]
        main()
