"""``ldiff_reader_study``: a blinded reader study of generated against real lesions, made and scored.

``ldiff_reader_study make --real IMAGES [--real-masks MASKS] --synthetic IMAGES [--synthetic-masks MASKS]
-n 40 --readers alice bob -o study/`` builds the set; ``ldiff_reader_study score study/
study/sheets/alice.csv study/sheets/bob.csv`` scores the filled-in sheets.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_reader_study",
        description="Blinded reader study: can readers tell generated lesions (or filled regions) from real ones?")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{make,score}")
    make = commands.add_parser(
        "make", help="build a blinded set of lesion crops, answer sheets and a separate key",
        description="Build a blinded set from two groups of scans (folders of {case}_0000.nii.gz ... with lesion "
        "masks {case}.nii.gz): N items, half from each group, each a NIfTI crop per channel and a PNG montage under "
        "a random id; one answer sheet per reader in sheets/, and key.csv, which must be withheld from the readers.")
    make.add_argument("--real", required=True, type=Path, metavar="IMAGES_DIR",
                      help="group A, the reference (real lesions, or unfilled scans)")
    make.add_argument("--real-masks", type=Path, metavar="MASKS_DIR",
                      help="lesion masks {case}.nii.gz of group A (default: beside its images)")
    make.add_argument("--synthetic", required=True, type=Path, metavar="IMAGES_DIR",
                      help="group B, the generated one whose recognition counts as a detection (synthetic lesions, "
                      "or filled scans)")
    make.add_argument("--synthetic-masks", type=Path, metavar="MASKS_DIR",
                      help="masks {case}.nii.gz of group B's lesions (default: beside its images)")
    make.add_argument("--labels", nargs=2, default=["real", "synthetic"], metavar=("A", "B"),
                      help="names of the two groups (default: real synthetic; e.g. unfilled filled); B names the "
                      "sheets' answer column")
    make.add_argument("-n", "--items", type=int, required=True, help="number of items, even: half from each group")
    make.add_argument("--readers", nargs="+", required=True, metavar="NAME", help="one answer sheet per reader")
    make.add_argument("--crop-mm", type=float, default=48.0, help="side of the cube around each lesion (default 48)")
    make.add_argument("--min-voxels", type=int, default=10,
                      help="lesions with fewer voxels are never shown (default 10)")
    make.add_argument("--mark", action=argparse.BooleanOptionalAction, default=False,
                      help="outline the lesion in the montages and write its mask (default: --no-mark, ticks on the "
                      "panel edges point at it)")
    make.add_argument("--channel-names", nargs="+", metavar="NAME", help="montage row labels, e.g. T1w FLAIR")
    make.add_argument("--seed", type=int, default=0, help="seed of the choice of lesions and of the ids (default 0)")
    make.add_argument("-o", "--output", required=True, type=Path, help="output folder (new or empty)")

    score = commands.add_parser(
        "score", help="score filled-in answer sheets against the set's key",
        description="Check the filled-in sheets against the set (exactly its items, each answered yes or no) and "
        "report per reader and pooled: detections, accuracy, sensitivity and specificity with exact 95 %% binomial "
        "intervals, and Cohen's kappa between readers. Writes report.json and report.md and prints the markdown.")
    score.add_argument("set_dir", type=Path, metavar="SET_DIR", help="the folder ldiff_reader_study make wrote")
    score.add_argument("sheets", type=Path, nargs="+", metavar="SHEET.csv",
                       help="filled-in sheets; each file's name (without .csv) names its reader")
    score.add_argument("-o", "--output", type=Path, help="folder of report.json/report.md (default SET_DIR/report)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits 1 with a one-sentence message on a user error."""
    arguments = build_parser().parse_args(argv)

    def work() -> None:
        if arguments.command == "make":
            from ldiff.evaluation.reader_study.make import GroupInput, make_reader_study

            labels = arguments.labels
            groups = (GroupInput(labels[0], arguments.real, arguments.real_masks),
                      GroupInput(labels[1], arguments.synthetic, arguments.synthetic_masks))
            study = make_reader_study(groups, arguments.output, arguments.items, arguments.readers,
                                      crop_mm=arguments.crop_mm, min_voxels=arguments.min_voxels, mark=arguments.mark,
                                      seed=arguments.seed, channel_names=arguments.channel_names)
            print(f"{arguments.output}: {study['num_items']} items; give each reader items/ and sheets/NAME.csv, "
                  "and keep key.csv and study.json for scoring.")
        else:
            from ldiff.evaluation.reader_study.score import score_reader_study

            _, text = score_reader_study(arguments.set_dir, arguments.sheets, arguments.output)
            print(text, end="")

    run_command(work)


if __name__ == "__main__":
    main()
