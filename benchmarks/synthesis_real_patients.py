"""Synthetic lesions against a real patient's own: contrast, intensity distribution and coverage per channel.

    python benchmarks/synthesis_real_patients.py -o benchmark_results/synthesis_real_patients
    python benchmarks/synthesis_real_patients.py --patients 07 --model ldiff/demo_models/t1_flair_cond_synth

For each patient of ../shared/data/open_ms_data (Lesjak et al. 2017, *Neuroinformatics*,
doi:10.1007/s12021-017-9348-7, CC-BY; read in place, never copied), the patient's own lesion shapes
are moved into its normal-appearing white matter (:func:`ldiff.evaluation.synthesis_realism.synthesis_sites`),
the synthesis model paints lesions there with its default sampling (``Predictor.synthesise``, as
``ldiff_predict`` does), and :func:`~ldiff.evaluation.synthesis_realism.channel_realism` compares the
synthetic lesions with the patient's real ones per channel. ``--cue own-half`` tells a cued model
(``ldiff_train ... --lesion-level-cue``) the mean intensity of half of the patient's lesions and compares
with the other half, so the number it is told never comes from the lesions it is judged against. Writes ``synthesis_realism.md`` and
``.json`` (command, commit, hardware, date, model and its checkpoint hash) and one preview per patient:
synthetic lesions before and after, and real lesions, on T1w and FLAIR.
"""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.evaluation.benchmark.lesion_context import tissue_classes
from ldiff.evaluation.benchmark.report import provenance
from ldiff.evaluation.benchmark.transplant import TransplantSettings
from ldiff.evaluation.synthesis_realism import channel_realism, realism_table, source_lesions, synthesis_sites
from ldiff.inference.predictor import Predictor
from ldiff.io import atomic_path, read_image, save_json_atomic
from ldiff.io.images import Geometry
from ldiff.masks import lesion_components

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "open_ms_data"
DEFAULT_MODEL = REPO / "ldiff" / "demo_models" / "t1_flair_cond_synth"
CHANNEL_FILES = {"T1w": "T1.nii.gz", "FLAIR": "FLAIR.nii.gz"}
CUE_NOTES = {"default": " (models without the cue ignore it; cued models get their training data's lesion contrast)",
             "own": " (measured on all of the patient's real lesions, which are also the comparison)",
             "own-half": " (measured on half of the patient's real lesions; the other half is the comparison)"}


def preview(original: list[np.ndarray], synthetic: list[np.ndarray], sites: np.ndarray, lesion: np.ndarray,
            names: list[str], title: str, path: Path, count: int = 3, half: int = 20) -> None:
    """Axial crops: the ``count`` largest synthetic lesions (each channel before and after) and real lesions."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def centres(mask: np.ndarray) -> list[tuple[int, ...]]:
        components = sorted(lesion_components(mask, None, min_voxels=1), key=lambda c: -c.voxel_count)[:count]
        return [tuple(int(round(v)) for v in c.centroid_zyx) for c in components]

    rows = [("synthetic", c) for c in centres(sites)] + [("real", c) for c in centres(lesion)]
    columns = [(f"{n} before", original[i], sites) for i, n in enumerate(names)]
    columns += [(f"{n} synthetic", synthetic[i], sites) for i, n in enumerate(names)]
    figure = Figure(figsize=(2.2 * len(columns), 2.3 * len(rows) + 0.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for r, (kind, (z, y, x)) in enumerate(rows):
        box = (z, slice(max(0, y - half), y + half), slice(max(0, x - half), x + half))
        outline = (lesion if kind == "real" else sites)[box]
        for c, (label, volume, _) in enumerate(columns):
            axis = axes[r][c]
            crop = volume[box]
            low, high = np.percentile(volume[volume > 0], [1, 99.5]) if (volume > 0).any() else (0, 1)
            axis.imshow(crop, cmap="gray", vmin=low, vmax=high, origin="lower")
            if "before" in label:
                axis.contour(outline, levels=[0.5], colors="red", linewidths=0.6)
            axis.set_xticks([]), axis.set_yticks([])
            if r == 0:
                axis.set_title(label, fontsize=8)
            if c == 0:
                axis.set_ylabel(f"{kind} lesion\naxial z={z}", fontsize=7)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100)


def split_lesions(lesion: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The patient's lesions in two halves by a seeded shuffle of its connected components (26-connected):
    (the half whose mean intensity the model is told, the half the synthetic lesions are compared with)."""
    from scipy import ndimage

    labels, count = ndimage.label(lesion, structure=np.ones((3, 3, 3), bool))
    order = np.random.default_rng(seed).permutation(np.arange(1, count + 1))
    told = np.isin(labels, order[: count // 2])
    return told, lesion & ~told


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="open_ms_data folder (patientNN/T1.nii.gz ...)")
    parser.add_argument("--patients", nargs="+", default=["07", "19"])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a cond_synth model with T1w and FLAIR")
    parser.add_argument("--count", type=int, default=20, help="lesion shapes placed per patient (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cue", choices=("default", "own", "own-half"), default="default",
                        help="for models that take a lesion intensity (cond_synth trained with --lesion-level-cue): "
                             "default = the model's own default (its training data's median lesion); own-half = the "
                             "lesions of half of the patient's real lesions (a seeded split of its lesions), the synthetic "
                             "lesions then compared with the other half only; own = all of its lesions (the use case: "
                             "more lesions like the patient's; the comparison then includes the lesions measured)")
    parser.add_argument("--lesion-contrast", choices=("auto", "match", "model"), default="auto",
                        help="as ldiff_predict --lesion-contrast (match with --cue default: the training lesions' contrast)")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "benchmark_results" / "synthesis_real_patients")
    arguments = parser.parse_args()

    predictor = Predictor.from_folder(arguments.model, device=arguments.device,
                                      match_contrast={"auto": None, "match": True, "model": False}[arguments.lesion_contrast])
    names = predictor.model.channel_names
    if set(names) - set(CHANNEL_FILES):
        sys.exit(f"{arguments.model}: channels {', '.join(names)}; this benchmark has T1w and FLAIR only.")
    checkpoint = arguments.model / "checkpoint_final.pth"
    record = {**provenance("python benchmarks/synthesis_real_patients.py " + shlex.join(sys.argv[1:])),
              "model": str(arguments.model), "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
              "sampling": predictor.describe_sampling(), "patients": {}}
    settings = TransplantSettings(count=arguments.count)
    sections = []
    for patient in arguments.patients:
        folder = arguments.data / f"patient{patient}"
        images = [read_image(folder / CHANNEL_FILES[name]) for name in names]
        arrays = [sitk.GetArrayFromImage(image).astype(np.float64) for image in images]
        lesion = sitk.GetArrayFromImage(read_image(folder / "lesion_mask.nii.gz")) > 0
        spacing = Geometry.of(images[0]).spacing
        t1 = arrays[names.index("T1w")] if "T1w" in names else arrays[0]
        classes = tissue_classes(t1, lesion)
        sites = synthesis_sites(t1, lesion, classes, spacing, np.random.default_rng(arguments.seed), settings)
        own, real = {"default": (None, lesion), "own": (lesion, lesion)}.get(arguments.cue) or split_lesions(
            lesion, arguments.seed)
        start = time.perf_counter()
        result = predictor.predict([sitk.Cast(image, sitk.sitkFloat32) for image in images], sites,
                                   seed=arguments.seed, progress=True, lesion_intensity_from=own)
        seconds = time.perf_counter() - start
        synthetic = [sitk.GetArrayFromImage(image).astype(np.float64) for image in result.images]
        # The real lesions whose shapes were moved (in own-half mode only those of the compared half).
        sources = source_lesions(sites, lesion) & real
        rows = [channel_realism(name, arrays[i], synthetic[i], sites, real, classes, spacing, sources=sources)
                for i, name in enumerate(names)]
        shapes_placed = len(lesion_components(sites, spacing))
        record["patients"][patient] = {"rows": [row.as_dict() for row in rows], "seconds": seconds, "cue": arguments.cue,
                                       "real_lesion_voxels_compared": int(real.sum()),
                                       "source_lesion_voxels": int(sources.sum()),
                                       "sites": int(sites.sum()), "shapes_placed": shapes_placed}
        sections.append(f"## patient{patient}\n\n{realism_table(rows)}\n\n{shapes_placed} "
                        f"shapes, {int(sites.sum())} voxels synthesised in {seconds:.0f} s.\n")
        preview(arrays, synthetic, sites, lesion, list(names),
                f"patient{patient} (Lesjak et al. 2017, CC-BY): {arguments.model.name}, {predictor.describe_sampling()}",
                arguments.output / f"preview_patient{patient}.png")
        print(sections[-1], flush=True)
    arguments.output.mkdir(parents=True, exist_ok=True)
    save_json_atomic(record, arguments.output / "synthesis_realism.json")
    header = (f"# Synthetic against real lesions\n\nCommand: `{record['command']}`  \nCommit {record['commit']}, "
              f"{record['hardware']}, {record['date']}; model {record['model']} (checkpoint sha256 "
              f"{record['checkpoint_sha256'][:16]}), {record['sampling']}; lesion intensity cue: {arguments.cue}"
              f"{CUE_NOTES[arguments.cue]}.\n\nContrast: volume-weighted mean of each "
              f"lesion's mean against the median of its NAWM ring 2-5 mm out (%); ratio = synthetic / real (1 is "
              f"ideal); source: the same for only the real lesions whose shapes were moved to the synthesis sites (like "
              f"with like: the all-lesion contrast is dominated by the largest lesions, which cannot be moved); W1: "
              f"1-Wasserstein distance between the voxel / ring-median distributions of synthetic and "
              f"real lesions; coverage: share of the synthesis mask changed by more than twice the noise level.\n\n")
    with atomic_path(arguments.output / "synthesis_realism.md") as temporary:
        temporary.write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"Wrote {arguments.output / 'synthesis_realism.md'}, .json and previews")


if __name__ == "__main__":
    main()
