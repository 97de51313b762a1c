"""Time of the warm start's smooth first guess on real patients: scikit-image's sparse LU against ldiff's solve.

    python benchmarks/biharmonic_solve.py -o documentation/results/biharmonic_solve

For each patient, the image and paint region are those ``ldiff_predict`` gives the shipped T1w model
(lesion mask dilated by the model's planned radius, preprocessed into the model's space). Both first
guesses are solved: the plain one (the paint is unknown) and the white-matter one (non-white-matter
tissue within ``WM_CONTEXT_REACH_MM`` of the paint is unknown too; the default). Each is solved component
by component, as ``biharmonic_inpaint`` does, once with scikit-image's ``inpaint_biharmonic`` (sparse LU)
and once with :func:`ldiff.inference.smooth_fill.solve_biharmonic` (direct below
``DIRECT_SOLVE_MAX_UNKNOWNS`` unknowns, conjugate gradients above); the table gives the seconds of each, the
largest system and the largest difference between the two solutions on the painted voxels (model space,
[-1, 1]). Run it on a quiet machine. Patients: ../shared/data/open_ms_data (Lesjak et al. 2017,
*Neuroinformatics*, doi:10.1007/s12021-017-9348-7, CC-BY; read in place, never copied).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fill_comparison import result_provenance, write_report
from ldiff.inference.predictor import COVERAGE_THRESHOLD, Predictor
from ldiff.inference.roi import coverage_in_preprocessed_space
from ldiff.inference.smooth_fill import WM_CONTEXT_REACH_MM, _component_crops, solve_biharmonic
from ldiff.masks import dilate_mask
from ldiff.preprocessing import derive_wm_mask, preprocess_images

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "open_ms_data"
MODEL = Path(__file__).resolve().parent.parent / "ldiff" / "demo_models" / "t1_cond_fill"
HEADER = ["patient", "first guess", "unknown voxels", "largest system", "scikit-image s", "ldiff s",
          "max difference on the paint"]


def model_space_case(predictor: Predictor, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """(image (Z, Y, X), paint, white matter, spacing (x, y, z)) of a patient as ``ldiff_predict`` sees it."""
    model = predictor.model
    image = sitk.ReadImage(str(folder / "T1.nii.gz"))
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lesion_mask.nii.gz"))) > 0
    dilation = model.mask_dilation
    region = dilate_mask(lesion, spacing=image.GetSpacing(), shape=dilation["shape"], radius_mm=dilation["radius_mm"])
    arrays, properties = preprocess_images([image], None, None, model.preprocessing_config, None, folder.name)
    brain = arrays["brain"].astype(bool)
    paint = ((coverage_in_preprocessed_space(region, properties) > COVERAGE_THRESHOLD) & brain)
    wm = derive_wm_mask(arrays["image"][model.description["wm_channel"]], brain, paint)
    return arrays["image"][0].astype(np.float64), paint, wm, tuple(properties["spacing_after_resampling"])


def solve_by_component(image: np.ndarray, unknown: np.ndarray, solver) -> tuple[np.ndarray, float, int]:
    """The fill of every component of ``unknown`` on its crop (margin 3), the seconds it took, the largest system."""
    result = image.copy()
    largest = 0
    start = time.perf_counter()
    for crop, inside in _component_crops(unknown, 3):
        if unknown[crop].all():
            continue
        largest = max(largest, int(unknown[crop].sum()))
        result[crop][inside] = solver(image[crop], unknown[crop])[inside]
    return result, time.perf_counter() - start, largest


def main() -> None:
    from skimage.restoration import inpaint_biharmonic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--patients", nargs="+", default=["07", "19"])
    parser.add_argument("-o", "--output", type=Path, required=True)
    arguments = parser.parse_args()
    predictor = Predictor.from_folder(MODEL)
    rows = []
    for patient in arguments.patients:
        image, paint, wm, spacing = model_space_case(predictor, arguments.data / f"patient{patient}")
        near = dilate_mask(paint, spacing=spacing, radius_mm=WM_CONTEXT_REACH_MM)
        for name, unknown in (("plain", paint), ("white matter", paint | (near & ~wm))):
            reference, reference_seconds, largest = solve_by_component(
                image, unknown, lambda values, mask: inpaint_biharmonic(np.asarray(values, np.float64), mask))
            ours, our_seconds, _ = solve_by_component(image, unknown, solve_biharmonic)
            difference = float(np.abs(ours[paint] - reference[paint]).max())
            rows.append([patient, name, int(unknown.sum()), largest, round(reference_seconds, 2),
                         round(our_seconds, 2), f"{difference:.1e}"])
            print(rows[-1], flush=True)
    description = ("Seconds of the warm start's biharmonic first guess in the model's space of the shipped T1w model, "
                   "component by component; 2 cores. 'max difference': largest |ldiff - scikit-image| on the painted "
                   "voxels ([-1, 1] units).")
    print(write_report(arguments.output, "biharmonic_solve", description, HEADER, rows, result_provenance([MODEL])))


if __name__ == "__main__":
    main()
