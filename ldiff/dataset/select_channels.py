"""Derive a dataset with a subset of another dataset's channels (e.g. a T1w-only copy of a T1w+FLAIR dataset).

Files are hard-linked where the file system allows (no extra disk space), else copied; channels are
renumbered in the order given. Labels, tissue maps and the healthy ground truth come along.
Command line: ``ldiff_select_channels -d 001 --channels T1w -o Dataset002_MSPhantomT1``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ldiff.dataset.raw import SPLITS, RawDataset
from ldiff.errors import LdiffError
from ldiff.io import save_json_atomic


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def select_channels(source: RawDataset, target_folder: Path, channel_names: list[str]) -> Path:
    """Write ``target_folder`` holding only ``channel_names`` of ``source`` (in that order); returns it."""
    missing = [name for name in channel_names if name not in source.channel_names]
    if missing:
        raise LdiffError(f"{source.folder}: has no channel {', '.join(missing)} (it has {', '.join(source.channel_names)}).")
    if target_folder.exists():
        raise LdiffError(f"{target_folder} already exists; remove it or choose another name.")
    indices = [source.channel_names.index(name) for name in channel_names]
    partial = target_folder.with_name(f".{target_folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    ending = source.file_ending
    for split in SPLITS:
        for case in source.cases(split):
            for new_index, old_index in enumerate(indices):
                _link_or_copy(case.image_files[old_index], partial / f"images{split}" / f"{case.identifier}_{new_index:04d}{ending}")
                if case.healthy_files is not None:
                    _link_or_copy(case.healthy_files[old_index], partial / f"healthy{split}" / f"{case.identifier}_{new_index:04d}{ending}")
            for folder, path in ((f"labels{split}", case.label_file), (f"tissue{split}", case.tissue_file)):
                if path is not None and path.is_file():
                    _link_or_copy(path, partial / folder / path.name)
    dataset_json = dict(source.dataset_json)
    dataset_json["channel_names"] = {str(i): name for i, name in enumerate(channel_names)}
    dataset_json.pop("modality", None)
    dataset_json["derived_from"] = {"dataset": source.name, "channels": channel_names}
    save_json_atomic(dataset_json, partial / "dataset.json")
    os.replace(partial, target_folder)
    return target_folder
