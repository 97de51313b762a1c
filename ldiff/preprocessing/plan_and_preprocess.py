"""The first command's library function: verify, fingerprint, plan and preprocess a raw dataset.

Output in ``ldiff_preprocessed/DatasetNNN_Name/``: ``dataset.json`` (copy), ``fingerprint.json``,
``plans.json`` and ``<data_identifier>/{case}.npz`` + ``{case}.json`` (arrays and the properties that
map a prediction back onto the original grid). Nothing is written unless verification passes, and
every file is written atomically.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from ldiff import paths
from ldiff.dataset.raw import RawCase, RawDataset
from ldiff.dataset.verify import verify_case, verify_case_errors, verify_dataset_structure
from ldiff.errors import LdiffError
from ldiff.io import save_json_atomic, save_npz_atomic
from ldiff.parallel import default_num_workers, map_cases
from ldiff.planning.fingerprint import case_fingerprint, dataset_fingerprint

logger = logging.getLogger("ldiff")


class DatasetVerificationError(LdiffError):
    """Raised with every problem of a dataset, one per line."""

    def __init__(self, dataset_name: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"dataset {dataset_name} failed verification ({len(problems)} problem(s)); nothing was written:\n{lines}")


def wm_channel_of(dataset: RawDataset) -> int | None:
    """The T1-weighted channel used to derive white matter when no tissue map exists (None if none)."""
    return dataset.channel_index("T1", "MPRAGE", "SPGR")


def _analyse_case(case: RawCase, channel_names: list[str], wm_channel: int | None) -> tuple[list[str], dict | None]:
    loaded = verify_case(case)
    if loaded.errors:
        return loaded.errors, None
    return [], case_fingerprint(loaded, channel_names, wm_channel)


def _preprocess_and_save(case: RawCase, plans: dict, output_folder: Path) -> str:
    from ldiff.preprocessing.preprocess_case import preprocess_case

    config = {"target_spacing": plans["target_spacing"], "normalization": plans["normalization"]}
    arrays, properties = preprocess_case(case, config, plans["wm_channel"])
    save_npz_atomic(output_folder / f"{case.identifier}.npz", **arrays)
    save_json_atomic(properties, output_folder / f"{case.identifier}.json")
    return case.identifier


def fingerprint_dataset(dataset: RawDataset, num_workers: int) -> dict:
    """Verify every case and fingerprint the training cases; raises DatasetVerificationError."""
    problems = verify_dataset_structure(dataset)
    train_cases, test_cases = dataset.cases("Tr"), dataset.cases("Ts")
    wm_channel = wm_channel_of(dataset)
    analyse = functools.partial(_analyse_case, channel_names=dataset.channel_names, wm_channel=wm_channel)
    results = map_cases(analyse, train_cases, num_workers, "verifying + fingerprinting")
    test_errors = map_cases(verify_case_errors, test_cases, num_workers, "verifying test cases") if test_cases else []
    for errors, _ in results:
        problems.extend(errors)
    for errors in test_errors:
        problems.extend(errors)
    if problems:
        raise DatasetVerificationError(dataset.name, problems)
    has_tissue = all(case.tissue_file is not None for case in train_cases)
    return dataset_fingerprint(dataset.name, dataset.channel_names, wm_channel, [r[1] for r in results], has_tissue)


def plan_and_preprocess(dataset_identifier: str | int, num_workers: int | None = None,
                        overrides: dict[str, Any] | None = None, device: str = "auto",
                        memory_target_gb: float | None = None, preprocess: bool = True) -> Path:
    """Verify, fingerprint, plan and (optionally) preprocess a dataset; returns the preprocessed folder."""
    # torch is imported here, not at module level, so that worker processes (which import this
    # module to run the per-case functions) start in a fraction of a second.
    import torch

    from ldiff.planning.planner import plan_experiment

    num_workers = num_workers or default_num_workers()
    name = paths.find_dataset_name(dataset_identifier, [paths.raw_root()])
    dataset = RawDataset(paths.raw_root() / name)
    fingerprint = fingerprint_dataset(dataset, num_workers)

    device_type = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if device_type == "cuda" and not torch.cuda.is_available():
        raise LdiffError("--device cuda was asked for, but torch sees no CUDA device.")
    try:
        plans = plan_experiment(fingerprint, overrides, device_type, memory_target_gb)
    except ValueError as error:
        raise LdiffError(f"planning {name} failed: {error}.") from None

    output = paths.preprocessed_root() / name
    output.mkdir(parents=True, exist_ok=True)
    save_json_atomic(dataset.dataset_json, output / "dataset.json")
    save_json_atomic(fingerprint, output / "fingerprint.json")
    save_json_atomic(plans, output / "plans.json")
    logger.info("fingerprint and plans written to %s", output)
    if preprocess:
        data_folder = output / plans["data_identifier"]
        worker = functools.partial(_preprocess_and_save, plans=plans, output_folder=data_folder)
        map_cases(worker, dataset.cases("Tr"), num_workers, "preprocessing")
        logger.info("preprocessed %d cases into %s", len(dataset.cases("Tr")), data_folder)
    return output
