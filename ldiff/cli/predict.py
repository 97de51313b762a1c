"""ldiff_predict: fill MS lesions (or synthesise them) in NIfTI scans with a trained ldiff model.

Single case: ``ldiff_predict -i t1.nii.gz --mask lesions.nii.gz -o filled.nii.gz`` (a multi-channel
model takes ``-i`` files in its channel order and ``-o`` a folder). Folder of cases: ``ldiff_predict
-i imagesTs -o filled [--masks labelsTs]`` (``{case}_XXXX.nii.gz`` images, ``{case}.nii.gz`` masks).
With only ``-i``/``-o`` the one trained model in ``$ldiff_results`` (or the packaged demo model) is
used; ``-m`` names a model folder, ``-d/-t/-c/-f`` narrow the choice. The logic lives in
:mod:`ldiff.inference.files`; this module only parses the command line.
"""
from __future__ import annotations

import argparse

from ldiff.errors import run_command
from ldiff.tasks import TASK_NAMES  # torch-free: --help stays fast

SAMPLER_CHOICES = ("ddim", "ddpm", "dpm_solver", "repaint")


def timestep_or_fraction(text: str) -> int | float | str:
    """``40`` is a training timestep, ``0.04`` a fraction of the schedule, ``full`` no warm start."""
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer timestep, a fraction or 'full', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_predict",
        description="Fill MS lesions with healthy tissue (filling models) or synthesise lesions (synthesis models) "
        "with a trained ldiff diffusion model. Only voxels inside the model's dilated mask change; outputs keep the "
        "input's grid and pixel type (integers rounded and clipped to the type's range) and are written atomically.",
    )
    files = parser.add_argument_group("files")
    files.add_argument("-i", "--input", nargs="+", required=True, metavar="IN",
                       help="a folder of {case}_XXXX.nii.gz images, or the image file(s) of one case in the model's "
                       "channel order")
    files.add_argument("-o", "--output", required=True,
                       help="output folder (folder input or several files), or output file (one input file)")
    masks = files.add_mutually_exclusive_group()
    masks.add_argument("--mask", help="the mask (0/1) of a single case: lesions to fill, or regions to put lesions in")
    masks.add_argument("--masks", metavar="DIR", help="folder of {case}.nii.gz masks (default: the input folder)")
    model = parser.add_argument_group("model (default: the one trained model found)")
    model.add_argument("-m", "--model", metavar="MODEL_FOLDER",
                       help="a model's fold folder (or its TASK__CONFIG folder with -f)")
    model.add_argument("-d", "--dataset", help="dataset id or name the model was trained on")
    model.add_argument("-c", "--configuration", help="2d or p3d")
    model.add_argument("-t", "--task", choices=TASK_NAMES, help="the task the model must have been trained for")
    model.add_argument("-f", "--fold", help="the fold (0-4 or all)")
    model.add_argument("-chk", "--checkpoint", choices=("final", "latest"), default="final",
                       help="final (default) or latest (the EMA weights of a run still training)")
    sampling = parser.add_argument_group("sampling (defaults depend on the task; see ldiff.inference.predictor)")
    sampling.add_argument("--sampler", choices=SAMPLER_CHOICES,
                          help="conditional models: ddim (25 steps unless --steps), ddpm (1000), dpm_solver (15); "
                          "unconditional models: repaint. Default: cond_fill dpm_solver with 3 steps and the mean "
                          "of 4 draws, warm-started at --t0 250; cond_synth ddim 25 steps, one draw; unconditional models repaint")
    sampling.add_argument("--steps", type=int, help="reverse steps (network calls per pass); default: the task's")
    sampling.add_argument("--eta", type=float, default=0.0, help="DDIM noise, 0 = deterministic (default 0)")
    sampling.add_argument("--jump-length", type=int,
                          help="RePaint: steps per jump back (default 8 for filling, the whole walk for synthesis)")
    sampling.add_argument("--resamplings", type=int,
                          help="RePaint: passes per jump (default 10 for filling, 3 for synthesis; 1 = no resampling)")
    sampling.add_argument("--t0", type=timestep_or_fraction,
                          help="noise level to start from, a timestep of 1000 or a fraction: uncond_synth noises its "
                          "coarse lesion to it (default 40); cond_fill noises a smooth (biharmonic) fill of the mask "
                          "to it and denoises from there, the warm start (default: the task's, see "
                          "documentation/benchmark.md; 'full' = no warm start, the whole walk from pure noise)")
    sampling.add_argument("--lesion-intensity", nargs="+", metavar="V",
                          help="uncond_synth: coarse-lesion intensity per channel (or one for all): a value in the "
                          "model's [-1, 1] space or pNN, a percentile of the brain (default: the training "
                          "fingerprint's median lesion intensity, else p10 for T1-weighted and p99 for other "
                          "channels). cond_synth trained with --lesion-level-cue: the lesion's contrast to its "
                          "surroundings in that space, negative = darker (default: the training lesions' against "
                          "their white matter)")
    sampling.add_argument("--lesion-intensity-from", metavar="MASK",
                          help="as --lesion-intensity, measured on the scan's own lesions in this mask (a file, or a "
                          "folder of masks named like the cases): their mean, or for a cued cond_synth their contrast "
                          "to the tissue around them, so synthetic lesions look like the patient's")
    sampling.add_argument("--lesion-contrast", choices=("auto", "match", "model"), default="auto",
                          help="cond_synth: match sets the painted lesions' contrast to their surroundings after "
                          "sampling to the one asked for (--lesion-intensity as a contrast, --lesion-intensity-from, "
                          "else the training lesions' for each lesion's volume); model keeps the model's own; auto (default): match, or the "
                          "model's own where it has no training fingerprint")
    sampling.add_argument("--standardise", choices=("auto", "on", "off"), default="auto",
                          help="map the scan's brain histogram onto the model's training data before sampling and the "
                          "fill back (Nyul-Udupa landmarks recorded in model.json); auto (default): for filling models "
                          "that record them")
    sampling.add_argument("--batch-size", type=int, help="samples per network call, --num-samples draws of a crop included "
                          "(default: the training batch size; at most 8 on a CPU)")
    sampling.add_argument("--num-samples", type=int,
                          help="average this many draws per crop: 1 is one realistic sample with texture; more give "
                               "the posterior mean (lowest expected error, smoother), at that many times the cost "
                               "(default: 4 for cond_fill, 1 for the other tasks, divided by the number of --views, "
                               "at least 1)")
    sampling.add_argument("--views", nargs="+", choices=("axial", "coronal", "sagittal", "all"),
                          help="slice orientations to fill along; the fills are averaged, with --num-samples draws in "
                               "each (default: all three for a model trained on all three, ldiff_train --slice-axes "
                               "all; else axial)")
    sampling.add_argument("--context-margin", type=int, default=16,
                          help="in-plane context voxels around each lesion region (default 16; crops are at least the "
                          "training patch size)")
    sampling.add_argument("--context-slices", type=int,
                          help="p3d: context slices on each side of the slices a stack fills (default 1 for "
                          "8-slice stacks, 2 for 16)")
    sampling.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same output")
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    run.add_argument("--continue", dest="continue_run", action="store_true",
                     help="skip cases whose outputs all exist")
    run.add_argument("--preview", action="store_true",
                     help="also write {case}_preview.png (input, mask outline, output through the largest lesion)")
    run.add_argument("--num-parts", type=int, default=1, help="split the cases into K parts (default 1)")
    run.add_argument("--part-id", type=int, default=0, help="the part this process predicts, 0..K-1 (default 0)")
    return parser


def main() -> None:
    arguments = build_parser().parse_args()

    def work() -> None:
        from ldiff.inference.jobs import plan_jobs

        # Wrong paths, a missing mask or an output that would replace an input are refused here,
        # before torch and the model are loaded (a fraction of a second instead of several).
        plan_jobs(arguments.input, arguments.output, arguments.mask, arguments.masks)
        from ldiff.inference.files import ModelChoice, predict_files
        from ldiff.inference.predictor import SamplingOptions

        model = ModelChoice(arguments.model, arguments.dataset, arguments.task, arguments.configuration,
                            arguments.fold, arguments.checkpoint, arguments.device)
        options = SamplingOptions(
            sampler=arguments.sampler, steps=arguments.steps, eta=arguments.eta, jump_length=arguments.jump_length,
            resamplings=arguments.resamplings, t0=arguments.t0, batch_size=arguments.batch_size, num_samples=arguments.num_samples,
            context_margin=arguments.context_margin, context_slices=arguments.context_slices,
            views=None if arguments.views is None else ("all" if "all" in arguments.views else tuple(arguments.views)),
            match_contrast={"auto": None, "match": True, "model": False}[arguments.lesion_contrast],
            standardise={"auto": None, "on": True, "off": False}[arguments.standardise],
        )
        written = predict_files(
            arguments.input, arguments.output, model, options, arguments.mask, arguments.masks, arguments.seed,
            arguments.continue_run, arguments.preview, arguments.num_parts, arguments.part_id,
            arguments.lesion_intensity, lesion_intensity_from=arguments.lesion_intensity_from,
        )
        if len(written) <= 10:
            print("Wrote " + (", ".join(str(path) for path in written) or "nothing") + ".")
        else:
            print(f"Wrote {len(written)} files under {arguments.output}.")

    run_command(work)


if __name__ == "__main__":
    main()
