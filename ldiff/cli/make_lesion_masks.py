"""ldiff_make_lesion_masks: propose plausible MS lesion masks for healthy scans, or transfer a patient's.

Proposal: ``ldiff_make_lesion_masks -i healthy_t1.nii.gz -o mask.nii.gz --count 8 --seed 1`` (or a
folder of ``{case}_0000.nii.gz`` into a folder of ``{case}.nii.gz``), ``--load 5`` for a lesion load
in mL, ``--library-from 001`` for real lesion shapes of a preprocessed dataset.
Transfer: ``ldiff_make_lesion_masks -i healthy_t1.nii.gz -o mask.nii.gz --transfer-from patient_t1.nii.gz
--transfer-mask patient_lesions.nii.gz``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import run_command

# Literal copies of ldiff.masks.lesion_masks' defaults, so that --help needs no scipy import.
DEFAULT_COUNT = 10
DEFAULT_RADIUS_MM = (1.5, 6.0)
DEFAULT_PERIVENTRICULAR_MM = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_make_lesion_masks",
        description="Propose lesion masks (uint8 0/1, on the input's grid) for healthy T1-weighted scans: shapes "
        "placed in white matter with a preference for the ventricles, never in CSF or cortex; or transfer a "
        "patient's lesion mask by registration. A record of the run goes to OUT/masks.json (folder input) or "
        "beside a single mask (mask.nii.gz -> mask.json).",
    )
    parser.add_argument("-i", "--input", required=True, type=Path,
                        help="a skull-stripped T1-weighted NIfTI image, or a folder of {case}_0000.nii.gz images")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="output mask file (single image) or folder of {case}.nii.gz masks (folder input)")
    # count and load exclude each other; checked by the library so the error is one sentence, exit 1.
    parser.add_argument("--count", type=int, metavar="N",
                        help=f"lesions per scan (default {DEFAULT_COUNT} when neither --count nor --load is given)")
    parser.add_argument("--load", type=float, metavar="ML",
                        help="total lesion load per scan in mL: shapes are added until it is reached "
                        "(ends at most 2 %% above it, or below by less than a small shape)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same masks")
    parser.add_argument("--library-from", metavar="SRC",
                        help="take real lesion shapes from a lesion library: a preprocessed dataset id (001) or "
                        "a lesion_library .npz file (default: synthetic ellipsoids)")
    parser.add_argument("--radius-mm", type=float, nargs=2, metavar=("LOW", "HIGH"), default=DEFAULT_RADIUS_MM,
                        help="semi-axis range of synthetic ellipsoids in mm, drawn log-uniformly "
                        f"(default {DEFAULT_RADIUS_MM[0]} {DEFAULT_RADIUS_MM[1]})")
    parser.add_argument("--periventricular-mm", type=float, default=DEFAULT_PERIVENTRICULAR_MM, metavar="MM",
                        help="decay length of the preference for WM near the ventricles; 0 places lesions "
                        f"uniformly in WM (default {DEFAULT_PERIVENTRICULAR_MM})")
    parser.add_argument("--channel", type=int, default=0, metavar="K",
                        help="folder input: the T1-weighted channel, files {case}_{K:04d} (default 0)")
    parser.add_argument("--tissue", type=Path, metavar="PATH",
                        help="tissue map (0 bg, 1 CSF, 2 GM, 3 WM): a file for a single image, a folder of "
                        "{case}.nii.gz for a folder (default: WM and CSF derived from the T1 by k-means)")
    parser.add_argument("--transfer-from", type=Path, metavar="PATIENT_T1",
                        help="transfer this patient's lesions instead: the patient's T1-weighted image")
    parser.add_argument("--transfer-mask", type=Path, metavar="PATIENT_MASK",
                        help="the patient's lesion mask (nonzero = lesion), on the patient image's grid")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits 1 with a one-sentence message on a user error."""
    arguments = build_parser().parse_args(argv)

    def work() -> None:
        from ldiff.masks.lesion_mask_files import MaskRequest, make_lesion_masks

        request = MaskRequest(
            count=arguments.count, load_ml=arguments.load, seed=arguments.seed,
            library_source=arguments.library_from, radius_mm=tuple(arguments.radius_mm),
            periventricular_mm=arguments.periventricular_mm, channel=arguments.channel, tissue=arguments.tissue,
            transfer_t1=arguments.transfer_from, transfer_mask=arguments.transfer_mask,
        )
        record = make_lesion_masks(arguments.input, arguments.output, request)
        print(f"Wrote {len(record['cases'])} lesion mask(s) ({record['method']}) under {arguments.output}")

    run_command(work)


if __name__ == "__main__":
    main()
