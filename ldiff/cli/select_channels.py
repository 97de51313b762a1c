"""``ldiff_select_channels``: derive a raw dataset with a subset of another's channels, in a given order."""
from __future__ import annotations

import argparse

from ldiff.errors import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_select_channels",
        description="Derive a raw dataset with a subset of another's channels (hard links where possible), "
                    "e.g. a T1w-only copy of a T1w+FLAIR dataset.")
    parser.add_argument("-d", "--dataset", required=True, help="source dataset id or name")
    parser.add_argument("--channels", nargs="+", required=True, help="channel names to keep, in order (e.g. T1w)")
    parser.add_argument("-o", "--output-name", required=True, help="new dataset name, e.g. Dataset002_MSPhantomT1")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits 1 with a one-sentence message on a user error."""
    arguments = build_parser().parse_args(argv)

    def work() -> None:
        from ldiff import paths
        from ldiff.dataset.raw import RawDataset
        from ldiff.dataset.select_channels import select_channels

        paths.dataset_id_from_name(arguments.output_name)  # refuses names that are not DatasetNNN_Name
        source = RawDataset(paths.raw_root() / paths.find_dataset_name(arguments.dataset, [paths.raw_root()]))
        print(select_channels(source, paths.raw_root() / arguments.output_name, arguments.channels))

    run_command(work)


if __name__ == "__main__":
    main()
