"""``ldiff_convert``: turn a downloaded MS-lesion dataset into a raw dataset ``DatasetNNN_Name``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import run_command
from ldiff.dataset.converters import CONVERTERS
from ldiff.dataset.converters.common import (
    CHANNEL_ORDER,
    DEFAULT_BIDS_MASK_PATTERN,
    TIMEPOINT_CHOICES,
    WMH_OTHER_LABEL_CHOICES,
    ConvertOptions,
)


def build_parser() -> argparse.ArgumentParser:
    formats = "; ".join(f"{name}: {converter.title}" for name, converter in CONVERTERS.items())
    parser = argparse.ArgumentParser(
        prog="ldiff_convert",
        description=(
            "Convert a downloaded dataset into ldiff's (nnU-Net v2's) raw layout in $ldiff_raw/DatasetNNN_Name: "
            "geometry kept, standard channel names, masks binarised to 0/1, and conversion_report.{json,md} "
            "listing what was taken and what was skipped. Nothing is downloaded or resampled. "
            f"Formats: {formats}. See documentation/converters.md."
        ),
    )
    parser.add_argument("format", choices=sorted(CONVERTERS), metavar="FORMAT", help=f"one of {', '.join(CONVERTERS)}")
    parser.add_argument("source", type=Path, metavar="SOURCE", help="the folder the download was unpacked into")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, metavar="NNN", help="dataset id, 1-999")
    parser.add_argument("--name", default=None,
                        help="dataset name after DatasetNNN_ (default per format, e.g. MSSEG2016)")
    parser.add_argument("--channels", nargs="+", default=None, metavar="NAME",
                        help=f"channels in order, from {', '.join(CHANNEL_ORDER)} (default: T1w and FLAIR, "
                        "those most cases have; cases lacking a chosen channel are skipped)")
    parser.add_argument("--rater", type=int, choices=(1, 2), default=None,
                        help="isbi2015: whose mask to use, mask1 or mask2 (default: 1)")
    parser.add_argument("--timepoints", choices=TIMEPOINT_CHOICES, default=None,
                        help="isbi2015, mslesseg: each patient's first scan only, or every scan as its own case "
                        "(default: first; the scans of one patient are not independent)")
    parser.add_argument("--wmh-other-label", choices=WMH_OTHER_LABEL_CHOICES, default=None,
                        help="wmh2017: what label 2 (other pathology) becomes: background, lesion, or skip the "
                        "cases that have any (default: background, counted per case in the report)")
    parser.add_argument("--bids-mask-pattern", default=None, metavar="GLOB",
                        help=f"bids: file-name pattern of the lesion masks in derivatives/*/sub-*/[ses-*/]anat/ "
                        f"(default: {DEFAULT_BIDS_MASK_PATTERN})")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="complete an interrupted conversion into the same folder (same options); "
                        "complete cases are kept")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits 1 with a one-sentence message on a user error."""
    arguments = build_parser().parse_args(argv)

    def work() -> None:
        from ldiff import paths
        from ldiff.dataset.converters.run import convert_dataset
        from ldiff.errors import LdiffError

        converter = CONVERTERS[arguments.format]
        if not 1 <= arguments.dataset_id <= 999:
            raise LdiffError(f"-d {arguments.dataset_id}: dataset ids run from 1 to 999.")
        name = f"Dataset{arguments.dataset_id:03d}_{arguments.name or converter.dataset_name}"
        paths.dataset_id_from_name(name)
        if arguments.name is not None and not arguments.name.replace("_", "").replace("-", "").isalnum():
            raise LdiffError(f"--name {arguments.name}: use letters, digits, '_' and '-' only.")
        raw_root = paths.raw_root(must_exist=False)
        others = sorted(p.name for p in raw_root.glob(f"Dataset{arguments.dataset_id:03d}_*") if p.name != name)
        if others:
            raise LdiffError(f"-d {arguments.dataset_id:03d}: the id is already used by {', '.join(others)} in "
                             f"{raw_root}; choose another id.")
        options = ConvertOptions(
            channels=tuple(arguments.channels) if arguments.channels else None,
            rater=arguments.rater,
            timepoints=arguments.timepoints,
            wmh_other_label=arguments.wmh_other_label,
            bids_mask_pattern=arguments.bids_mask_pattern,
        )
        result = convert_dataset(converter, arguments.source, raw_root / name, options,
                                 resume=arguments.resume, progress=not arguments.no_progress)
        print(f"{result.folder}: {len(result.training_cases)} training and {len(result.test_cases)} test case(s), "
              f"{result.skipped} skipped; report: {result.report}")

    run_command(work)


if __name__ == "__main__":
    main()
