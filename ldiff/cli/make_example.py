"""``ldiff_make_example``: build the simulated MS example dataset Dataset001_MSPhantom."""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_make_example",
        description=(
            "Build the example dataset Dataset001_MSPhantom in the raw folder: MS-like T1w/FLAIR phantoms "
            "simulated from the MNI152 template shipped with nilearn (nothing is downloaded), with lesion "
            "labels, tissue labels and lesion-free ground truth."
        ),
    )
    parser.add_argument(
        "-o", "--output-folder", type=Path, default=None,
        help="raw root folder to create the dataset in (default: $ldiff_raw)",
    )
    parser.add_argument("--num-train", type=int, default=24, help="training cases (default: 24)")
    parser.add_argument("--num-test", type=int, default=6, help="test cases (default: 6)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives identical files (default: 0)"
    )
    parser.add_argument(
        "--spacing", type=float, default=1.0,
        help="isotropic voxel size in mm: 1 for realistic data, 2 for quick CPU runs, 4 for tiny test "
        "volumes (default: 1)",
    )
    parser.add_argument("--dataset-name", default="Dataset001_MSPhantom", help="name of the dataset folder")
    parser.add_argument(
        "-j", "--num-workers", type=int, default=None,
        help="worker processes (default: one per CPU core, at most 8); the output does not depend on it",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset folder of the same name"
    )
    parser.add_argument(
        "--real-lesion-masks", type=Path, default=None, metavar="DIR",
        help="folder of real lesion masks in MNI space (e.g. the 30 masks of the Ljubljana MS dataset, "
        "Lesjak et al. 2017): a share of the cases then takes one real patient's lesions (shapes, sizes, "
        "counts, sites) instead of simulated ones; read at run time, never copied",
    )
    parser.add_argument(
        "--real-lesion-share", type=float, default=0.5,
        help="share of the cases with a real patient's lesions when --real-lesion-masks is given (default: 0.5)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return parser


def _main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    from ldiff.dataset.example import make_example_dataset
    from ldiff.paths import raw_root

    output_root = arguments.output_folder if arguments.output_folder is not None else raw_root(must_exist=False)
    make_example_dataset(
        output_root,
        num_train=arguments.num_train,
        num_test=arguments.num_test,
        seed=arguments.seed,
        spacing_mm=arguments.spacing,
        dataset_name=arguments.dataset_name,
        num_workers=arguments.num_workers,
        overwrite=arguments.overwrite,
        show_progress=not arguments.no_progress,
        real_lesion_masks=arguments.real_lesion_masks,
        real_lesion_share=arguments.real_lesion_share,
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits 1 with a one-sentence message on a user error."""
    run_command(lambda: _main(argv))


if __name__ == "__main__":
    main()
