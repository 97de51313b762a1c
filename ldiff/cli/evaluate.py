"""ldiff_evaluate: measure filled images against a known truth inside the filled region.

``ldiff_evaluate -r healthyTs -p filled -m labelsTs [-o summary.json]`` compares every
``{case}_XXXX.nii.gz`` in ``-p`` with the file of the same name in ``-r`` inside the mask
``{case}.nii.gz`` of ``-m`` (three single files also work), under the reference thesis's protocol and
the BraTS 2023 inpainting protocol; writes summary.json and summary.csv and prints a table.
"""
from __future__ import annotations

import argparse

from ldiff.errors import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_evaluate",
        description="Evaluate filled images against references (e.g. healthy ground truth) inside the filled "
        "region: MSE, PSNR, SSIM and LPIPS per case and channel and over the dataset, under the reference-thesis "
        "protocol ([-1, 1] scaling from the reference's min/max) and the BraTS 2023 inpainting protocol "
        "(percentile normalisation, metrics in the mask), in the mask and over the whole volume. Every file is "
        "checked first; cases with an empty mask are skipped with a warning.",
    )
    parser.add_argument("-r", "--reference", required=True,
                        help="folder of reference images {case}_XXXX.nii.gz (e.g. healthyTs), or one file")
    parser.add_argument("-p", "--prediction", required=True,
                        help="folder of predictions named like the references, or one file")
    parser.add_argument("-m", "--masks", required=True,
                        help="folder of masks {case}.nii.gz (0/1; the filled region), or one file")
    parser.add_argument("-o", "--output", default=None, metavar="SUMMARY.json",
                        help="summary JSON; the CSV gets the same stem (default: summary.json in the prediction "
                        "folder, or {name}_summary.json beside a single prediction)")
    parser.add_argument("--dilate", type=int, default=0, metavar="N",
                        help="dilate each mask by N voxels before evaluation (default 0), as ldiff_fill_classic does")
    parser.add_argument("--dilate-shape", choices=("ball", "cube"), default="ball",
                        help="dilation kernel: ball (default) or cube (N=1 is the thesis's 3x3x3 kernel)")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (the slowest metric on CPU)")
    parser.add_argument("-np", "--num-processes", type=int, default=None,
                        help="worker processes (default: CPU count, at most 8)")
    return parser


def main() -> None:
    arguments = build_parser().parse_args()

    def work() -> None:
        from ldiff.evaluation.evaluate import default_output_json, evaluate_folder, summary_table

        output = arguments.output or default_output_json(arguments.prediction)
        result = evaluate_folder(
            arguments.reference, arguments.prediction, arguments.masks, output, dilate=arguments.dilate,
            lpips=not arguments.no_lpips, dilate_shape=arguments.dilate_shape, num_processes=arguments.num_processes,
        )
        print(summary_table(result))
        print(f"Wrote {result['outputs']['json']} and {result['outputs']['csv']}")

    run_command(work)


if __name__ == "__main__":
    main()
