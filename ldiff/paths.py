"""Resolution of the three data folders (raw, preprocessed, results) and of datasets inside them.

Each folder comes from the environment variable of the same name (``ldiff_raw``,
``ldiff_preprocessed``, ``ldiff_results``); when it is unset, the top-level folder of that name in the
ldiff repository is used. Resolution is lazy: nothing happens at import time.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ldiff.errors import LdiffError

logger = logging.getLogger("ldiff")

FOLDER_VARIABLES = ("ldiff_raw", "ldiff_preprocessed", "ldiff_results")
_REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
_already_reported: set[str] = set()


def _resolve(variable: str, must_exist: bool) -> Path:
    value = os.environ.get(variable)
    if value:
        folder = Path(value).expanduser()
        origin = f"environment variable {variable}"
    else:
        folder = _REPOSITORY_ROOT / variable
        origin = f"default because {variable} is unset"
        if not _REPOSITORY_ROOT.joinpath("setup.py").is_file() and not folder.is_dir():
            raise LdiffError(
                f"The folder for {variable} is unknown: set it with `export {variable}=/path/to/{variable}`."
            )
    if must_exist and not folder.is_dir():
        raise LdiffError(
            f"The folder {folder} ({origin}) does not exist: create it or point `export {variable}=...` elsewhere."
        )
    if variable not in _already_reported:
        _already_reported.add(variable)
        logger.info("%s = %s (%s)", variable, folder, origin)
    return folder


def raw_root(must_exist: bool = True) -> Path:
    """Folder holding ``DatasetNNN_Name`` raw datasets."""
    return _resolve("ldiff_raw", must_exist)


def preprocessed_root(must_exist: bool = False) -> Path:
    """Folder holding fingerprints, plans and preprocessed arrays."""
    return _resolve("ldiff_preprocessed", must_exist)


def results_root(must_exist: bool = False) -> Path:
    """Folder holding trained models."""
    return _resolve("ldiff_results", must_exist)


_DATASET_NAME = re.compile(r"^Dataset(\d{3})_(.+)$")


def dataset_id_from_name(name: str) -> int:
    match = _DATASET_NAME.match(name)
    if match is None:
        raise LdiffError(f"'{name}' is not a dataset name of the form DatasetNNN_Name.")
    return int(match.group(1))


def find_dataset_name(identifier: str | int, search_roots: list[Path] | None = None) -> str:
    """Turn ``1``, ``"001"`` or ``"Dataset001_MSPhantom"`` into the full dataset name.

    The name is looked up in the raw folder, then the preprocessed and results folders, like nnU-Net.
    """
    text = str(identifier).strip()
    if search_roots is None:
        search_roots = [p for p in (raw_root(False), preprocessed_root(), results_root()) if p.is_dir()]
    if _DATASET_NAME.match(text):
        return text
    if not text.isdigit():
        raise LdiffError(f"'{text}' is neither a dataset id (e.g. 1 or 001) nor a name like Dataset001_MSPhantom.")
    prefix = f"Dataset{int(text):03d}_"
    found = sorted({p.name for root in search_roots for p in root.glob(prefix + "*") if p.is_dir()})
    if not found:
        places = ", ".join(str(r) for r in search_roots) or "no existing data folder"
        raise LdiffError(f"No dataset with id {int(text):03d} was found in {places}.")
    if len(found) > 1:
        raise LdiffError(f"Dataset id {int(text):03d} is ambiguous: {', '.join(found)}; pass the full name.")
    return found[0]


def preprocessed_case_ids(data_folder: Path) -> list[str]:
    """The cases ``ldiff_plan_and_preprocess`` wrote into ``data_folder`` (``{case}.npz``), sorted; the
    folder also holds the cached lesion library (``lesion_library_*.npz``), which is not a case."""
    return sorted(path.stem for path in Path(data_folder).glob("*.npz") if not path.stem.startswith("lesion_library"))
