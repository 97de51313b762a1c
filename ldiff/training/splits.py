"""Cross-validation splits, nnU-Net style: written once to ``splits_final.json`` and reused afterwards.

The file is a list of ``{"train": [...], "val": [...]}``, one entry per fold, in the preprocessed
dataset folder. Once it exists it is the source of truth: later calls (any seed, any process) read
it, so every fold of every run trains on the same cases, and a hand-edited file is respected.

Fold count: 5, or as many folds as cases when there are fewer than 5 cases (each case is then
validated once). A single case cannot be split; its only fold trains and validates on that case.
Fold ``"all"`` trains on every case and validates on a small fixed subset (the first
:data:`ALL_FOLD_VALIDATION_CASES` validation cases of fold 0), which only tracks training, since
those cases are also trained on.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ldiff.io import load_json, save_json_atomic

logger = logging.getLogger("ldiff")

SPLITS_FILE = "splits_final.json"
NUM_FOLDS = 5
ALL_FOLD_VALIDATION_CASES = 2


def make_splits(case_ids: list[str], seed: int = 12345, num_folds: int = NUM_FOLDS) -> list[dict[str, list[str]]]:
    """K-fold splits of ``case_ids`` (min(num_folds, number of cases) folds), each list sorted.

    Cases are shuffled with ``seed`` and cut into contiguous validation blocks whose sizes differ by
    at most one; each fold trains on the cases outside its block.
    """
    cases = sorted(set(case_ids))
    if not cases:
        raise ValueError("cannot make cross-validation splits without any case.")
    if len(cases) == 1:
        return [{"train": list(cases), "val": list(cases)}]
    order = np.random.default_rng(seed).permutation(len(cases))
    blocks = np.array_split(order, min(num_folds, len(cases)))
    splits = []
    for block in blocks:
        validation = {cases[i] for i in block}
        splits.append({"train": [c for c in cases if c not in validation], "val": sorted(validation)})
    return splits


def load_or_create_splits(preprocessed_dataset_folder: Path, case_ids: list[str], seed: int = 12345
                          ) -> list[dict[str, list[str]]]:
    """The folder's splits, creating ``splits_final.json`` (atomically) on first use.

    Raises ValueError when an existing file names a case that is not in ``case_ids`` (the dataset
    changed since the splits were made: delete the file to make new ones).
    """
    path = Path(preprocessed_dataset_folder) / SPLITS_FILE
    if not path.is_file():
        save_json_atomic(make_splits(case_ids, seed), path)
        logger.info("wrote cross-validation splits to %s", path)
    # Read back even after writing: a concurrent run (maybe with another seed) may have won the race,
    # and every run must use what is on disk.
    splits = load_json(path)
    known = set(case_ids)
    unknown = sorted({case for fold in splits for case in fold["train"] + fold["val"]} - known)
    if unknown:
        raise ValueError(f"{path} names cases that are not in the dataset ({', '.join(unknown[:5])}"
                         f"{' ...' if len(unknown) > 5 else ''}); delete it to make new splits.")
    missing = sorted(known - {case for fold in splits for case in fold["train"] + fold["val"]})
    if missing:
        logger.warning("%d case(s) are in no fold of %s, e.g. %s", len(missing), path, missing[0])
    return splits


def get_split(preprocessed_dataset_folder: Path, case_ids: list[str], fold: int | str, seed: int = 12345
              ) -> tuple[list[str], list[str]]:
    """(training case ids, validation case ids) of ``fold``: an index into the splits or ``"all"``.

    ``fold`` may also be a string of digits (as typed on a command line). ``seed`` matters only when
    ``splits_final.json`` does not exist yet. Raises ValueError for a fold that does not exist.
    """
    splits = load_or_create_splits(preprocessed_dataset_folder, case_ids, seed)
    if isinstance(fold, str) and fold.strip().lower() == "all":
        everything = sorted(set(case_ids))
        validation = [case for case in splits[0]["val"] if case in set(everything)][:ALL_FOLD_VALIDATION_CASES]
        return everything, validation or everything[:ALL_FOLD_VALIDATION_CASES]
    index = _fold_index(fold)
    if index is None or not 0 <= index < len(splits):
        raise ValueError(f"fold must be an integer from 0 to {len(splits) - 1} or 'all', got {fold!r}.")
    return list(splits[index]["train"]), list(splits[index]["val"])


def _fold_index(fold: int | str) -> int | None:
    if isinstance(fold, bool):
        return None
    if isinstance(fold, (int, np.integer)):
        return int(fold)
    if isinstance(fold, str) and fold.strip().lstrip("-").isdigit():
        return int(fold.strip())
    return None
