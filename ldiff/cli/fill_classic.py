"""ldiff_fill_classic: fill MS lesions with the classic methods (NAWM, rim, patch, biharmonic,
ring median, SLF).

Single image: ``ldiff_fill_classic -i t1.nii.gz --mask lesions.nii.gz -o filled.nii.gz --method nawm``.
Folder of cases: ``ldiff_fill_classic -i imagesTs -o filled --masks labelsTs --method all``
(``{case}_XXXX.nii.gz`` images, ``{case}.nii.gz`` masks; ``all`` writes one subfolder per method).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import run_command

# Kept here rather than imported so that --help does not pay for importing scipy and scikit-image.
METHOD_CHOICES = ("nawm", "rim", "patch", "biharmonic", "ringmedian", "slf", "all")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_fill_classic",
        description="Fill lesions with the classic fillers MS studies use (FSL-, ANTs-, NiftySeg-style, "
        "biharmonic, SLF) and a ring-median baseline, to compare ldiff against. Only voxels inside the mask "
        "change; outputs keep the input's grid and pixel type.",
    )
    parser.add_argument("-i", "--input", required=True, help="a NIfTI image, or a folder of {case}_XXXX.nii.gz images")
    parser.add_argument("-o", "--output", required=True,
                        help="output image (single image, one method) or folder (folder input, or --method all)")
    parser.add_argument("--method", required=True, choices=METHOD_CHOICES, help="filler to use; all = every one")
    masks = parser.add_mutually_exclusive_group()
    masks.add_argument("--mask", help="lesion mask of the single input image (0/1)")
    masks.add_argument("--masks", metavar="DIR",
                       help="folder of {case}.nii.gz lesion masks (default: the input folder)")
    parser.add_argument("--wm", help="white-matter mask (0/1): a file for a single image, a folder of "
                        "{case}.nii.gz for a folder; used by nawm, ringmedian and slf (and to restrict the rim); "
                        "slf without it assumes a T1-like contrast")
    dilation = parser.add_mutually_exclusive_group()
    dilation.add_argument("--dilate", type=int, default=None, metavar="N",
                          help="dilate the lesion mask by a ball of N voxels before filling (default 0)")
    dilation.add_argument("--dilate-like", metavar="MODEL_FOLDER",
                          help="dilate as the given ldiff model's plan does (e.g. ldiff/demo_models/t1_cond_fill: 2 "
                          "voxels), so that this filler and ldiff_predict with that model replace the same region")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same output")
    parser.add_argument("--rim-hypointense-only", action="store_true",
                        help="rim: draw only from rim voxels >= the lesion mean, as ANTs does for T1 (wrong for FLAIR)")
    return parser


def planned_dilation(model_folder: str) -> int:
    """The mask dilation (voxels) that the model in ``model_folder`` was planned and trained with."""
    from ldiff.errors import LdiffError
    from ldiff.io.model_files import read_model_json

    description = read_model_json(Path(model_folder))
    try:
        return int(description["mask_dilation"]["radius_voxels"])
    except (KeyError, TypeError, ValueError):
        raise LdiffError(f"{model_folder}: its model.json records no mask_dilation.radius_voxels.") from None


def main() -> None:
    arguments = build_parser().parse_args()

    def work() -> None:
        from ldiff.evaluation.classic.files import fill_classic_files

        options = {"rim": {"hypointense_only": True}} if arguments.rim_hypointense_only else {}
        dilate = arguments.dilate or 0
        if arguments.dilate_like is not None:
            dilate = planned_dilation(arguments.dilate_like)
            print(f"Dilating the lesion masks by {dilate} voxel(s), as {arguments.dilate_like} does.")
        written = fill_classic_files(
            arguments.input, arguments.output, arguments.method, arguments.mask, arguments.masks,
            arguments.wm, dilate, arguments.seed, options,
        )
        print(f"Wrote {len(written)} filled image(s) under {arguments.output}")

    run_command(work)


if __name__ == "__main__":
    main()
