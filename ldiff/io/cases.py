"""Finding the cases of a folder of ``{case}_XXXX`` NIfTI files, and reading their masks with checks.

Folders follow the nnU-Net naming: ``{case}_0000{ending}`` is a case's first channel,
``{case}_0001{ending}`` its second, and so on (``ending`` is ``.nii.gz`` or ``.nii``); the case's
masks are ``{case}{ending}``. The command-line tools that take such folders (classic filling,
evaluation) find their cases and read their masks here, so they agree on what a case is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.io.images import Geometry, geometry_mismatch, read_image

NIFTI_ENDINGS = (".nii.gz", ".nii")
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})(?P<ending>\.nii\.gz|\.nii)$")


@dataclass(frozen=True)
class CaseChannels:
    """The channel files of one case in a folder: ``files`` holds (channel, path) in channel order."""

    case: str
    ending: str
    files: tuple[tuple[str, Path], ...]


def nifti_ending(path: Path) -> str | None:
    """``.nii.gz`` or ``.nii`` if ``path`` ends with it, else None."""
    return next((ending for ending in NIFTI_ENDINGS if path.name.endswith(ending)), None)


def split_channel_name(name: str) -> tuple[str, str, str] | None:
    """(case, channel, ending) of a ``{case}_XXXX.nii[.gz]`` file name, or None for any other name."""
    match = _CHANNEL_FILE.match(name)
    return (match["case"], match["channel"], match["ending"]) if match else None


def find_case_channels(folder: Path) -> list[CaseChannels]:
    """Every case of ``folder`` that has a first channel ``{case}_0000``, sorted by case name.

    A group without ``_0000`` is not a case: it is e.g. a mask whose own name ends in ``_NNNN``.
    """
    groups: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    for path in sorted(folder.iterdir()):
        parts = split_channel_name(path.name)
        if parts is not None and path.is_file():
            case, channel, ending = parts
            groups.setdefault((case, ending), []).append((channel, path))
    return [
        CaseChannels(case, ending, tuple(sorted(files)))
        for (case, ending), files in sorted(groups.items())
        if any(channel == "0000" for channel, _ in files)
    ]


def read_binary_mask(path: Path, reference: Geometry, reference_file: Path, kind: str) -> np.ndarray:
    """Read a mask, check its grid against the image's and that it holds only 0 and 1; bool (Z, Y, X)."""
    image = read_image(path)
    mismatch = geometry_mismatch(reference, Geometry.of(image))
    if mismatch is not None:
        raise LdiffError(f"{path}: {kind} grid differs from the image {reference_file} ({mismatch}).")
    values = sitk.GetArrayViewFromImage(image)
    binary = (values == 0) | (values == 1)
    if not binary.all():
        example = values[~binary].flat[0]
        raise LdiffError(f"{path}: {kind} is not binary (found the value {example}); it must hold only 0 and 1.")
    return values == 1
