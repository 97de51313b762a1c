"""What every converter shares: the record of a source case, the converter interface and naming rules.

A converter only looks at file names (``discover``): it finds the cases of a downloaded layout and, per
case, which file is which channel and which file is the lesion mask. Reading, checking and writing the
voxels is the same for every format (:mod:`ldiff.dataset.converters.writing`). This module imports
nothing heavy, so the command line can list the formats quickly.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

# Standard channel names, in the order they take when several are chosen. T1wKS is a contrast-enhanced
# (gadolinium) T1w image; the name comes from the Ljubljana dataset's T1WKS ("kontrastno sredstvo").
CHANNEL_ORDER = ("T1w", "FLAIR", "T2w", "PDw", "T1wKS")
DEFAULT_CHANNELS = ("T1w", "FLAIR")
TIMEPOINT_CHOICES = ("first", "all")
WMH_OTHER_LABEL_CHOICES = ("background", "lesion", "skip-case")
DEFAULT_BIDS_MASK_PATTERN = "*label-lesion*_mask.nii.gz"
NIFTI_SUFFIXES = (".nii.gz", ".nii")


class CaseSkipped(Exception):
    """Raised while a case is read: the case is left out and the message is its reason in the report."""


@dataclass(frozen=True)
class ConvertOptions:
    """The user's choices. ``None`` means "not given", so a converter can tell defaults from choices."""

    channels: tuple[str, ...] | None = None
    rater: int | None = None
    timepoints: str | None = None
    wmh_other_label: str | None = None
    bids_mask_pattern: str | None = None

    def given(self) -> dict[str, object]:
        """The format-specific options that were set (for checking they apply to the chosen format)."""
        names = ("rater", "timepoints", "wmh_other_label", "bids_mask_pattern")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class SourceCase:
    """One case found in the source: where its files are; nothing has been read yet.

    ``identifier`` is the case name in the output (filesystem-safe, unique), ``source`` the case's
    place relative to the source folder (for the report), ``channels`` maps standard channel names to
    the files found (a case may lack some; the run skips it if it lacks a chosen channel), ``split`` is
    "Tr" or "Ts" (the source's own test split, only when it has masks).
    """

    identifier: str
    source: str
    channels: dict[str, Path]
    mask: Path
    split: str = "Tr"
    searched: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SkippedSource:
    """A source case left out, and why (one sentence)."""

    source: str
    reason: str
    identifier: str | None = None


@dataclass
class Discovery:
    """What a converter found: usable cases, cases left out already at discovery, layout notes."""

    cases: list[SourceCase] = field(default_factory=list)
    skipped: list[SkippedSource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Converter:
    """One downloadable layout. Subclasses set the class attributes and implement :meth:`discover`."""

    format_name: str = ""
    dataset_name: str = ""        # default DatasetNNN_<dataset_name>
    title: str = ""
    url: str = ""
    licence: str = ""
    citation: str = ""
    layout_hint: str = ""         # the expected file names, for the "nothing found" error
    options_used: tuple[str, ...] = ()
    mask_rule: str = "any value > 0 is lesion (non-integer values: >= 0.5)"

    def discover(self, source: Path, options: ConvertOptions) -> Discovery:
        raise NotImplementedError

    def binarise(self, mask: np.ndarray, options: ConvertOptions) -> tuple[np.ndarray, str | None]:
        """The 0/1 lesion mask (uint8, same shape) of a source mask, and a note when values were mapped."""
        return binarise_mask(mask)

    def settings(self, options: ConvertOptions) -> dict[str, object]:
        """The options that shape this format's output, defaults filled in (recorded in the report)."""
        return {}


def binarise_mask(mask: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The generic rule: integer-valued masks -> value > 0 is lesion; probabilistic ones -> >= 0.5.

    Returns (uint8 array of 0/1, note or None when the mask was already 0/1).
    """
    values = np.unique(mask)
    if np.all(np.isin(values, (0, 1))):
        return (mask == 1).astype(np.uint8), None
    if np.issubdtype(mask.dtype, np.integer) or np.all(np.mod(values, 1) == 0):
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if values.size > 8 else "")
        return (mask > 0).astype(np.uint8), f"mask values {shown}: every value > 0 counted as lesion"
    return (mask >= 0.5).astype(np.uint8), (
        f"non-integer mask values in [{values.min():g}, {values.max():g}]: >= 0.5 counted as lesion")


_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def safe_identifier(*parts: str) -> str:
    """Join ``parts`` with "_" into a case name of letters, digits, "-" and "_" only."""
    cleaned = [_UNSAFE.sub("_", part).strip("_") for part in parts]
    return "_".join(part for part in cleaned if part)


def nifti_stem(path: Path) -> str | None:
    """The name without ``.nii.gz``/``.nii``, or None for other files."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def find_nifti(folder: Path, *stems: str) -> Path | None:
    """The first of ``{stem}.nii.gz`` / ``{stem}.nii`` that exists in ``folder``, in the order given."""
    for stem in stems:
        for suffix in NIFTI_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def walk_files(source: Path, skip_folders: Sequence[str] = ()) -> Iterator[Path]:
    """Every file under ``source`` (sorted, hidden entries and ``skip_folders`` names left out)."""
    for root, folders, files in os.walk(source):
        folders[:] = sorted(f for f in folders if not f.startswith(".") and f not in skip_folders)
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def relative(path: Path, source: Path) -> str:
    """``path`` relative to ``source`` as text ("." for the source itself)."""
    try:
        text = str(path.relative_to(source))
    except ValueError:
        return str(path)
    return text or "."


def is_test_path(path: Path, source: Path) -> bool:
    """Whether a folder lies in the source's test split (a folder named test/testing/Test...)."""
    parts = Path(relative(path, source)).parts
    return any(part.lower() in ("test", "testing", "test_data", "testdata") for part in parts)


def keep_first_timepoints(cases: list[SourceCase], patient_of: dict[str, str], timepoint_of: dict[str, int],
                          option: str) -> tuple[list[SourceCase], list[SkippedSource]]:
    """With ``option == "first"``, keep each patient's earliest timepoint; the others become skipped."""
    if option == "all":
        return cases, []
    earliest: dict[str, int] = {}
    for case in cases:
        patient = patient_of[case.identifier]
        earliest[patient] = min(earliest.get(patient, timepoint_of[case.identifier]), timepoint_of[case.identifier])
    kept, skipped = [], []
    for case in cases:
        if timepoint_of[case.identifier] == earliest[patient_of[case.identifier]]:
            kept.append(case)
        else:
            skipped.append(SkippedSource(case.source, "later timepoint of a patient already taken "
                                         "(--timepoints all takes every timepoint)", case.identifier))
    return kept, skipped
