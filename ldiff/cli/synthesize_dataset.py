"""``ldiff_synthesize_dataset``: an nnU-Net raw dataset of healthy scans with synthetic lesions.

``ldiff_synthesize_dataset -d 001 -o Dataset101_MSSynthetic --per-scan 2 --count 8`` takes the healthy
twins of Dataset001 (``healthyTr``), draws two lesion masks per scan and paints lesions into them with
the synthesis model; ``-i DIR`` takes a folder of ``{case}_XXXX.nii.gz`` scans instead. The logic lives
in :mod:`ldiff.synthetic_datasets.build`; this module only parses the command line.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import run_command
# The mask options are ldiff_make_lesion_masks' own (its literal copies of the library's defaults).
from ldiff.cli.make_lesion_masks import DEFAULT_COUNT, DEFAULT_PERIVENTRICULAR_MM, DEFAULT_RADIUS_MM


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_synthesize_dataset",
        description="Write a raw dataset (imagesTr, labelsTr, healthyTr, dataset.json) of healthy scans with "
        "synthetic lesions, ready for ldiff_plan_and_preprocess and nnUNetv2_plan_and_preprocess. Each synthetic "
        "case gets its own lesion mask (as ldiff_make_lesion_masks draws it) and lesions painted by a synthesis "
        "model (as ldiff_predict paints them); its label is the mask the lesions were painted from, not the "
        "dilated region the model repainted (see documentation/synthetic_datasets.md).")
    source = parser.add_argument_group("healthy scans (one of)")
    source.add_argument("-i", "--input", type=Path, metavar="DIR",
                        help="a folder of healthy scans {case}_0000.nii.gz, {case}_0001.nii.gz, ...")
    source.add_argument("-d", "--dataset", metavar="SOURCE",
                        help="a raw dataset id or name: its healthyTr (lesion-free twins), else its imagesTr cases "
                        "whose label is empty; training split only")
    source.add_argument("--channel-names", nargs="+", metavar="NAME",
                        help="-i: the channels of the files _0000, _0001, ... (default: the model's channels, in order)")
    source.add_argument("--tissue", type=Path, metavar="DIR",
                        help="-i: a folder of {case}.nii.gz tissue maps (0 bg, 1 CSF, 2 GM, 3 WM) where lesions go "
                        "into label 3 (default: white matter found in the T1-weighted channel by k-means)")
    output = parser.add_argument_group("output")
    output.add_argument("-o", "--output-name", required=True, metavar="DatasetNNN_Name",
                        help="the new dataset, written under $ldiff_raw")
    output.add_argument("--per-scan", type=int, default=1, metavar="K",
                        help="synthetic cases per healthy scan, each with its own mask and seed (default 1)")
    output.add_argument("--add-real", metavar="DATASET",
                        help="also add this raw dataset's training cases (hard links), as real_{case}")
    masks = parser.add_argument_group("lesion masks (as ldiff_make_lesion_masks)")
    masks.add_argument("--count", type=int, metavar="N",
                       help=f"lesions per case (default {DEFAULT_COUNT} when neither --count nor --load is given)")
    masks.add_argument("--load", type=float, metavar="ML", help="total lesion load per case in mL")
    masks.add_argument("--library-from", metavar="SRC",
                       help="real lesion shapes: a preprocessed dataset id (001) or a lesion_library .npz file "
                       "(default: synthetic ellipsoids)")
    masks.add_argument("--radius-mm", type=float, nargs=2, metavar=("LOW", "HIGH"), default=DEFAULT_RADIUS_MM,
                       help=f"semi-axis range of synthetic ellipsoids in mm (default {DEFAULT_RADIUS_MM[0]} "
                       f"{DEFAULT_RADIUS_MM[1]})")
    masks.add_argument("--periventricular-mm", type=float, default=DEFAULT_PERIVENTRICULAR_MM, metavar="MM",
                       help="decay length of the preference for WM near the ventricles; 0 places lesions uniformly "
                       f"(default {DEFAULT_PERIVENTRICULAR_MM})")
    model = parser.add_argument_group("model (default: the one synthesis model for these channels, e.g. the demo "
                                      "t1_flair_cond_synth)")
    model.add_argument("-m", "--model", metavar="MODEL_FOLDER", help="a cond_synth or uncond_synth model's fold folder")
    model.add_argument("-chk", "--checkpoint", choices=("final", "latest"), default="final", help="default final")
    model.add_argument("--steps", type=int, help="reverse steps (default: the task's, e.g. 25 DDIM steps)")
    model.add_argument("--lesion-intensity", nargs="+", metavar="V",
                       help="for uncond_synth models and cond_synth models trained with --lesion-level-cue: as "
                            "ldiff_predict --lesion-intensity (default: the training lesions')")
    model.add_argument("--batch-size", type=int, help="samples per network call (default: the model's, at most 8 on a CPU)")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0,
                     help="random seed (default 0); each case's mask and lesions are seeded from it and the case id")
    run.add_argument("--continue", dest="continue_run", action="store_true",
                     help="finish an interrupted run: keep complete cases, redo the others")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits 1 with a one-sentence message on a user error."""
    arguments = build_parser().parse_args(argv)

    def work() -> None:
        from ldiff.synthetic_datasets.build import SynthesisRequest, synthesize_dataset
        from ldiff.masks.lesion_mask_files import MaskRequest

        masks = MaskRequest(count=arguments.count, load_ml=arguments.load, library_source=arguments.library_from,
                            radius_mm=tuple(arguments.radius_mm), periventricular_mm=arguments.periventricular_mm)
        options = None
        if arguments.steps is not None or arguments.batch_size is not None:
            from ldiff.inference.predictor import SamplingOptions

            options = SamplingOptions(steps=arguments.steps, batch_size=arguments.batch_size)
        request = SynthesisRequest(per_scan=arguments.per_scan, seed=arguments.seed, masks=masks,
                                   model_folder=arguments.model, checkpoint=arguments.checkpoint,
                                   device=arguments.device, options=options, add_real=arguments.add_real,
                                   continue_run=arguments.continue_run,
                                   lesion_intensity=None if arguments.lesion_intensity is None
                                   else tuple(arguments.lesion_intensity))
        folder = synthesize_dataset(arguments.output_name, request, arguments.input, arguments.dataset,
                                    arguments.channel_names, arguments.tissue)
        print(f"Wrote {folder} (verified); train on it with ldiff_plan_and_preprocess -d {folder.name[7:10]} or "
              f"nnUNetv2_plan_and_preprocess -d {int(folder.name[7:10])} --verify_dataset_integrity.")

    run_command(work)


if __name__ == "__main__":
    main()
