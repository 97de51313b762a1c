"""``python -m ldiff.cli.record_landmarks MODEL_FOLDER DATA_FOLDER``: add the training data's intensity
landmarks to a model trained before ``ldiff_train`` recorded them.

``ldiff_train`` writes ``intensity_landmarks`` into ``model.json`` itself; a model trained earlier
(or elsewhere) has none, so ``ldiff_predict`` cannot standardise its input
(:mod:`ldiff.preprocessing.standardisation`). This measures them on the preprocessed cases it was
trained on (``DATA_FOLDER``: ``$ldiff_preprocessed/DatasetNNN_Name/<data identifier>`` with
``{case}.npz``; all of them, or ``--cases``) and rewrites ``model.json`` atomically with them added;
the checkpoint is not touched. ``--source`` says in words what the cases are, where the folder
name alone would not (it is kept in ``model.json``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ldiff.errors import LdiffError, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ldiff.cli.record_landmarks",
        description="Add the training data's intensity landmarks (brain percentiles after normalisation) to a "
                    "model's model.json, so that ldiff_predict can standardise new scans to them.")
    parser.add_argument("model_folder", help="the model folder (with model.json)")
    parser.add_argument("data_folder", help="the preprocessed cases it was trained on (folder of {case}.npz)")
    parser.add_argument("--cases", nargs="+", help="case ids to use (default: every preprocessed case in the folder)")
    parser.add_argument("--source", help="what the cases are, in words (default: how many, of which dataset)")
    return parser


def record_landmarks(model_folder: Path, data_folder: Path, case_ids: list[str] | None = None,
                     source: str | None = None) -> dict:
    """Measure the landmarks on ``case_ids`` of ``data_folder`` (default all) and write them into
    ``model_folder/model.json``; returns the record. One sentence for a folder without cases or a
    channel count that differs from the model's."""
    from ldiff import paths
    from ldiff.io.model_files import channel_names_of, read_model_json, write_model_json
    from ldiff.preprocessing.standardisation import target_landmarks, training_landmarks

    description = read_model_json(model_folder)
    if case_ids is None:
        case_ids = paths.preprocessed_case_ids(Path(data_folder))
    missing = [case for case in case_ids if not (Path(data_folder) / f"{case}.npz").is_file()]
    if not case_ids or missing:
        raise LdiffError(f"{data_folder}: has no preprocessed case "
                         + (f"{missing[0]}.npz." if missing else "(.npz); give the folder ldiff_plan_and_preprocess wrote."))
    record = training_landmarks(Path(data_folder), case_ids)
    if source:
        record["source"] = source
    num_channels = len(channel_names_of(description)) or int(description["network"]["out_channels"])
    target_landmarks({"intensity_landmarks": record}, num_channels)  # refuses a channel count that differs
    write_model_json({**description, "intensity_landmarks": record}, Path(model_folder))
    return record


def main(argv: list[str] | None = None) -> None:
    """Entry point; exits 1 with a one-sentence message on a user error."""
    arguments = build_parser().parse_args(argv)

    def work() -> None:
        record = record_landmarks(Path(arguments.model_folder), Path(arguments.data_folder), arguments.cases,
                                  arguments.source)
        print(f"{arguments.model_folder}/model.json: intensity landmarks of {record['cases']} cases "
              f"(percentiles {', '.join(map(str, record['percentiles']))}): "
              + "; ".join(", ".join(f"{v:.3f}" for v in row) for row in record["mean"]))

    run_command(work)


if __name__ == "__main__":
    main()
