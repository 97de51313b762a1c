"""The real lesion shapes a training run borrows for its masks, built once and cached beside the data.

The library holds every connected lesion of the given cases' preprocessed ``lesion`` arrays, at the
plans' target spacing. It is cached in ``<folder>/<data_identifier>/lesion_library_<key>.npz``, where
``<key>`` is a hash of the sorted case ids: each fold's training cases get their own file (so the
shapes of a fold's validation cases never leak into its training masks), concurrent runs of
different folds never overwrite each other, and a changed case list never reuses a stale file. A
``.json`` file of the same name lists the cases for people.

The same function serves ``--lesion-shapes-from 002``: called on another preprocessed dataset, it
returns that dataset's shapes at that dataset's spacing, and the MaskSampler resamples them.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from ldiff.io import load_json, save_json_atomic
from ldiff.masks.library import LesionLibrary

logger = logging.getLogger("ldiff")

LIBRARY_PREFIX = "lesion_library"


def case_list_key(case_ids: list[str]) -> str:
    """A short, order-independent key of a case list (12 hex digits of a SHA-1)."""
    text = "\n".join(sorted(set(case_ids)))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def library_path(preprocessed_dataset_folder: Path, data_identifier: str, case_ids: list[str]) -> Path:
    """Where the library of ``case_ids`` is cached."""
    return Path(preprocessed_dataset_folder) / data_identifier / f"{LIBRARY_PREFIX}_{case_list_key(case_ids)}.npz"


def _target_spacing(preprocessed_dataset_folder: Path, data_identifier: str, case_ids: list[str]) -> tuple[float, float, float]:
    """(x, y, z) mm of the preprocessed arrays: the plans' target spacing, else a case's properties."""
    plans_file = Path(preprocessed_dataset_folder) / "plans.json"
    if plans_file.is_file():
        return tuple(float(v) for v in load_json(plans_file)["target_spacing"])
    properties = load_json(Path(preprocessed_dataset_folder) / data_identifier / f"{case_ids[0]}.json")
    return tuple(float(v) for v in properties["spacing_after_resampling"])


def build_lesion_library(preprocessed_dataset_folder: Path, data_identifier: str, case_ids: list[str]) -> LesionLibrary:
    """Collect the lesions of ``case_ids`` from their preprocessed arrays (possibly an empty library)."""
    data_folder = Path(preprocessed_dataset_folder) / data_identifier
    spacing = _target_spacing(preprocessed_dataset_folder, data_identifier, case_ids)
    masks = []
    for case in sorted(set(case_ids)):
        # np.load decompresses only the member that is read, so the images are never touched.
        with np.load(data_folder / f"{case}.npz") as arrays:
            masks.append(arrays["lesion"].astype(bool))
    return LesionLibrary.from_lesion_masks(masks, spacing)


def load_or_build_lesion_library(preprocessed_dataset_folder: Path, data_identifier: str, case_ids: list[str]
                                 ) -> LesionLibrary | None:
    """The cases' real lesion shapes, from the cache or built and cached (atomically); None if there are none.

    An empty library is cached too, so a healthy dataset is scanned only once.
    """
    if not case_ids:
        raise ValueError("a lesion library needs at least one case.")
    path = library_path(preprocessed_dataset_folder, data_identifier, case_ids)
    if path.is_file():
        library = LesionLibrary.from_npz(path)
    else:
        library = build_lesion_library(preprocessed_dataset_folder, data_identifier, case_ids)
        library.to_npz(path)
        save_json_atomic({"case_ids": sorted(set(case_ids)), "num_shapes": len(library), "spacing": list(library.spacing)},
                         path.with_suffix(".json"))
        logger.info("lesion library of %d shapes from %d cases written to %s", len(library), len(set(case_ids)), path)
    return library if len(library) > 0 else None
