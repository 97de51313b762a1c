"""The on-disk contract of a raw dataset, compatible with nnU-Net v2.

``DatasetNNN_Name/`` holds:

- ``dataset.json``: ``channel_names`` (``{"0": "T1w", "1": "FLAIR"}``), ``labels``
  (``{"background": 0, "lesion": 1}``), ``numTraining``, ``file_ending`` (e.g. ``.nii.gz``);
- ``imagesTr/{case}_{0000,0001,...}{file_ending}`` and ``labelsTr/{case}{file_ending}`` (binary lesion masks);
- optionally ``imagesTs/`` + ``labelsTs/`` (held-out test cases);
- optionally (ldiff's additions) ``tissueTr/{case}{file_ending}`` (0 background, 1 CSF, 2 GM, 3 WM) and
  ``healthyTr/{case}_{0000,...}{file_ending}`` (lesion-free ground truth of datasets with simulated
  lesions), with the ``Ts`` counterparts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ldiff.errors import LdiffError

SPLITS = ("Tr", "Ts")
TISSUE_LABELS = {"background": 0, "CSF": 1, "GM": 2, "WM": 3}


@dataclass(frozen=True)
class RawCase:
    """Files of one case. ``image_files`` has one entry per channel, in channel order."""

    identifier: str
    split: str
    image_files: tuple[Path, ...]
    label_file: Path | None
    tissue_file: Path | None = None
    healthy_files: tuple[Path, ...] | None = None


class RawDataset:
    """A raw dataset folder and its ``dataset.json``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.name = self.folder.name
        json_path = self.folder / "dataset.json"
        if not json_path.is_file():
            raise LdiffError(f"{json_path}: missing; every raw dataset needs a dataset.json.")
        try:
            self.dataset_json = json.loads(json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise LdiffError(f"{json_path}: is not valid JSON ({error}).") from None
        missing = [key for key in ("channel_names", "labels", "file_ending") if key not in self.dataset_json]
        # nnU-Net v1 used "modality" instead of "channel_names"; accept it so old folders work unchanged.
        if "channel_names" in missing and "modality" in self.dataset_json:
            self.dataset_json["channel_names"] = self.dataset_json["modality"]
            missing.remove("channel_names")
        if missing:
            raise LdiffError(f"{json_path}: lacks the key(s) {', '.join(missing)}.")
        channel_names = self.dataset_json["channel_names"]
        if not isinstance(channel_names, dict) or not channel_names:
            raise LdiffError(f"{json_path}: channel_names must be a non-empty mapping like {{\"0\": \"T1w\"}}.")
        try:
            order = sorted(int(key) for key in channel_names)
        except ValueError:
            raise LdiffError(f"{json_path}: channel_names keys must be channel numbers (\"0\", \"1\", ...).") from None
        if order != list(range(len(order))):
            raise LdiffError(f"{json_path}: channel numbers must run 0..{len(order) - 1} without gaps.")
        self.channel_names: list[str] = [str(channel_names[str(i)]) for i in order]
        self.file_ending: str = self.dataset_json["file_ending"]
        self.labels: dict = self.dataset_json["labels"]

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    def channel_index(self, *names: str) -> int | None:
        """Index of the first channel whose name contains one of ``names`` (case-insensitive)."""
        for wanted in names:
            for index, channel in enumerate(self.channel_names):
                if wanted.lower() in channel.lower():
                    return index
        return None

    def case_identifiers(self, split: str = "Tr") -> list[str]:
        """Case identifiers found in ``images{split}`` (files named ``{case}_{XXXX}{ending}``)."""
        folder = self.folder / f"images{split}"
        if not folder.is_dir():
            return []
        ending = self.file_ending
        suffix_length = len("_0000") + len(ending)
        identifiers = {
            path.name[:-suffix_length]
            for path in folder.iterdir()
            if path.name.endswith(ending) and len(path.name) > suffix_length
            and path.name[-suffix_length] == "_" and path.name[-suffix_length + 1:-len(ending)].isdigit()
        }
        return sorted(identifiers)

    def case(self, identifier: str, split: str = "Tr") -> RawCase:
        """The expected file paths of a case (existence is checked by verification, not here)."""
        ending = self.file_ending
        images = tuple(self.folder / f"images{split}" / f"{identifier}_{c:04d}{ending}" for c in range(self.num_channels))
        label_folder = self.folder / f"labels{split}"
        label = label_folder / f"{identifier}{ending}" if label_folder.is_dir() or split == "Tr" else None
        tissue = self.folder / f"tissue{split}" / f"{identifier}{ending}"
        healthy_folder = self.folder / f"healthy{split}"
        healthy = None
        if healthy_folder.is_dir():
            healthy = tuple(healthy_folder / f"{identifier}_{c:04d}{ending}" for c in range(self.num_channels))
        return RawCase(identifier, split, images, label, tissue if tissue.is_file() else None, healthy)

    def cases(self, split: str = "Tr") -> list[RawCase]:
        return [self.case(identifier, split) for identifier in self.case_identifiers(split)]
