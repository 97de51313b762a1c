"""A real patient's lesions before and after filling with the shipped defaults: README's figure.

    python benchmarks/real_patient_figure.py \
        --t1 ../shared/data/open_ms_data/patient07/T1.nii.gz \
        --mask ../shared/data/open_ms_data/patient07/lesion_mask.nii.gz \
        -o documentation/figures/real_patient_fill.png

Fills every lesion of the scan exactly as ``ldiff_predict -i T1 --mask MASK -o OUT`` does (same model
choice, same default sampling; ``--model`` to use another), then draws zoomed axial crops around the
``--lesions`` largest lesions: the scan with the lesion outline, the ldiff fill, and the ring-median
fill for comparison. Writes the PNG and ``<png>.json`` (command, commit, hardware, date, seconds).
The data (Lesjak et al. 2017, CC-BY) is read in place, never copied.
"""
from __future__ import annotations

import argparse
import shlex
import textwrap
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.evaluation.benchmark.report import provenance
from ldiff.evaluation.classic import classic_fill
from ldiff.inference.model_loading import choose_model_folder
from ldiff.inference.predictor import Predictor
from ldiff.io import atomic_path, read_image, save_json_atomic
from ldiff.masks import dilate_mask, lesion_components

HALF = 20  # crop half-width in voxels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t1", required=True)
    parser.add_argument("--mask", required=True)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--model", help="model folder (default: what ldiff_predict picks)")
    parser.add_argument("--lesions", type=int, default=4, help="how many of the largest lesions to show")
    parser.add_argument("--title", default="")
    arguments = parser.parse_args()

    image = read_image(arguments.t1)
    mask = sitk.GetArrayFromImage(read_image(arguments.mask)) > 0
    folder = choose_model_folder(arguments.model, num_input_channels=1)
    predictor = Predictor.from_folder(folder, device="auto")
    start = time.perf_counter()
    result = predictor.predict([image], mask, seed=0, progress=True)
    seconds = time.perf_counter() - start
    before = sitk.GetArrayFromImage(image).astype(np.float32)
    after = sitk.GetArrayFromImage(result.images[0]).astype(np.float32)
    region = dilate_mask(mask, spacing=image.GetSpacing(), radius_mm=predictor.model.mask_dilation["radius_mm"])
    ring = classic_fill(before, region, "ringmedian", image.GetSpacing()).astype(np.float32)

    components = sorted(lesion_components(mask, image.GetSpacing()), key=lambda c: -c.voxel_count)[:arguments.lesions]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = ("scan (lesion outlined)", "ldiff (default)", "ring median")
    figure = Figure(figsize=(2.2 * len(columns), 2.2 * len(components) + 0.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(components), len(columns), squeeze=False)
    brain = before[before > before.min()]
    low, high = np.percentile(brain, [1, 99.5])
    for row, component in enumerate(components):
        z, y, x = (int(round(c)) for c in component.centroid_zyx)
        ys = slice(max(0, y - HALF), y + HALF)
        xs = slice(max(0, x - HALF), x + HALF)
        for column, volume in enumerate((before, after, ring)):
            axis = axes[row][column]
            axis.imshow(volume[z, ys, xs], cmap="gray", vmin=low, vmax=high, origin="lower", interpolation="nearest")
            if column == 0:
                axis.contour(mask[z, ys, xs].astype(np.float32), levels=[0.5], colors="#ff3030", linewidths=0.7)
                axis.set_ylabel(f"lesion {row + 1}: {component.voxel_count} vox\naxial z={z}", fontsize=7)
            if row == 0:
                axis.set_title(columns[column], fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle((arguments.title + "\n" if arguments.title else "") +
                    f"{predictor.model.describe()}\n" +
                    textwrap.fill(f"{predictor.describe_sampling()}; {int(mask.sum())} lesion voxels filled in "
                                  f"{seconds:.0f} s", width=32 * len(columns)),
                    fontsize=7)
    figure.tight_layout()
    output = Path(arguments.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    record = provenance("python " + " ".join(shlex.quote(a) for a in sys.argv), [folder])
    record.update(seconds=round(seconds, 1), lesion_voxels=int(mask.sum()), crops=result.crops,
                  network_calls=result.network_calls, model=str(folder), sampling=predictor.describe_sampling())
    save_json_atomic(record, output.with_suffix(".json"))
    print(f"{output}: {int(mask.sum())} voxels filled in {seconds:.1f} s")


if __name__ == "__main__":
    main()
