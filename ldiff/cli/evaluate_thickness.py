"""ldiff_evaluate_thickness: does filling remove the lesions' bias on cortical thickness?

``ldiff_evaluate_thickness -i unfilled/ -i ldiff/ -i patch/ --names unfilled ldiff patch
[--truth healthyTs] -o thickness/`` measures cortical thickness (ANTs DiReCT after an Atropos
segmentation; antspyx, ``pip install 'ldiff[thickness]'``) on every scan, per region, and reports each
method's change against the first (unfilled) folder and, with ``--truth``, its bias against the
lesion-free truth and the share of the lesions' bias it removes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import run_command

REGION_MODES = ("register", "mni")  # kept here so that --help and input checks import nothing heavy
TOOLS = ("ants_direct",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_evaluate_thickness",
        description="Cortical thickness of unfilled and filled scans (and of the lesion-free truth when known): "
        "global and per-region means, change against the unfilled scans (the thesis's |x-y|/(x+y) and the plain "
        "percent difference), bias against the truth and the share of the lesions' bias each filler removes. "
        "Writes thickness.json/.csv/.md, a per-region plot and a brain map to the output folder.",
    )
    parser.add_argument("-i", "--input", action="append", required=True, metavar="SCANS_DIR",
                        help="a folder of scans, one per case ({case}_0000.nii.gz or {case}.nii.gz); repeat for "
                        "each method; the first is the reference (the unfilled scans)")
    parser.add_argument("--names", nargs="+", required=True, help="one name per -i folder, in the same order")
    parser.add_argument("--truth", metavar="HEALTHY_DIR", default=None,
                        help="the lesion-free scans of the same cases (e.g. the example dataset's healthyTs)")
    parser.add_argument("--tissue", metavar="TISSUE_DIR", default=None,
                        help="tissue maps {case}.nii.gz (0 background, 1 CSF, 2 GM, 3 WM) used instead of Atropos for "
                        "every scan of the case; then the thickness no longer sees the fill, so this checks the "
                        "thickness tool, not the fillers")
    parser.add_argument("--brain-masks", metavar="DIR", default=None,
                        help="brain masks {case}.nii.gz (default: the non-zero voxels of the first folder's scan; "
                        "the scans must be skull-stripped)")
    parser.add_argument("--channel", type=int, default=0, help="channel of the T1w image in {case}_XXXX files (default 0)")
    parser.add_argument("--regions", choices=REGION_MODES, default="register",
                        help="register (default): affine registration of nilearn's MNI152 template to each case; "
                        "mni: the scans are already in MNI152 space, regions come from their world coordinates")
    parser.add_argument("--tool", choices=TOOLS, default="ants_direct", help="thickness tool (default ants_direct)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="reuse the thickness maps already in the output folder (an interrupted run goes on)")
    return parser


def check_arguments(arguments: argparse.Namespace) -> None:
    """Cheap checks before any heavy import; one sentence per problem."""
    from ldiff.errors import LdiffError

    if len(arguments.names) != len(arguments.input):
        raise LdiffError(f"{len(arguments.input)} -i folder(s) but {len(arguments.names)} --names; give one name per folder.")
    if len(set(arguments.names)) != len(arguments.names):
        raise LdiffError(f"--names must be distinct (got {' '.join(arguments.names)}).")
    if arguments.truth is not None and "truth" in arguments.names:
        raise LdiffError("'truth' is the name of the --truth scans; call that -i folder something else.")
    for folder in arguments.input + [f for f in (arguments.truth, arguments.tissue, arguments.brain_masks) if f]:
        if not Path(folder).is_dir():
            raise LdiffError(f"{folder}: no such folder.")
    output = Path(arguments.output).resolve()
    for folder in arguments.input + [arguments.truth]:
        if folder is not None and output == Path(folder).resolve():
            raise LdiffError(f"{arguments.output}: the output folder is an input folder; choose another.")
    if (output / "maps").is_dir() and any((output / "maps").iterdir()) and not arguments.resume:
        raise LdiffError(f"{arguments.output} already holds thickness maps; pass --continue to reuse them or "
                         "choose another output folder.")


def main() -> None:
    arguments = build_parser().parse_args()

    def work() -> None:
        check_arguments(arguments)
        from ldiff.evaluation.thickness.run import evaluate_thickness

        evaluate_thickness([Path(f) for f in arguments.input], arguments.names, Path(arguments.output),
                           truth=None if arguments.truth is None else Path(arguments.truth),
                           tissue=None if arguments.tissue is None else Path(arguments.tissue),
                           brain_masks=None if arguments.brain_masks is None else Path(arguments.brain_masks),
                           channel=arguments.channel, region_mode=arguments.regions, tool_name=arguments.tool,
                           resume=arguments.resume)

    run_command(work)


if __name__ == "__main__":
    main()
