"""Building a blinded reader-study set (``ldiff_reader_study make``).

Two groups of scans: group A, the reference (e.g. real lesions, or unfilled scans), and group B, the
generated one (e.g. synthetic lesions, or filled scans) whose recognition counts as a detection. Half
of the items come from each group, drawn uniformly among the group's lesions of at least
``min_voxels`` voxels (not the largest: readers would learn that big means one group). Every item gets
an opaque random id; items are presented in the alphabetical order of their ids, i.e. a random order.

Layout of the set (``OUT/``):

* ``items/{id}_0000.nii.gz`` ... one float32 crop per channel (float32 for every item, so the stored
  data type cannot tell the groups apart), ``items/{id}.png`` the montage, ``items/{id}.nii.gz`` the
  lesion's mask when the study is marked, ``items/README.txt`` the readers' instructions;
* ``sheets/{reader}.csv``: ``item_id,{B},confidence`` with empty answers, one per reader;
* ``key.csv``: each item's group, source case, lesion centre and size: withhold it from the readers;
* ``study.json``: the settings, the item ids in order and the key's SHA-256 (``score`` checks both).

The set is built in a hidden sibling folder and renamed into place at the end, so an interrupted run
leaves no half-made set under the final name.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from ldiff.errors import LdiffError
from ldiff.io import atomic_path, save_json_atomic, write_image_atomic

from .items import LesionCandidate, case_lesions, crop_half_sizes, crop_image, find_cases, load_case_images
from .montage import write_montage
from .score import NO, YES

logger = logging.getLogger("ldiff")

# No vowels (so no month names and no "e" exponent) and no 0/1/l/o: spreadsheets keep such ids as text,
# and readers cannot misread them. The first character is a letter, so an id is never a number.
ID_LETTERS = "bcdfghjkmnpqrstvwxz"
ID_ALPHABET = ID_LETTERS + "23456789"
ID_LENGTH = 8
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
RESERVED_COLUMNS = ("item_id", "confidence")
KEY_COLUMNS = ("item_id", "group", "generated", "case", "centre_x", "centre_y", "centre_z",
               "world_x_mm", "world_y_mm", "world_z_mm", "voxels", "volume_mm3")
SIZE_RATIO_WARNING = 2.0


@dataclass(frozen=True)
class GroupInput:
    """One group of scans: its name in sheets and key, its images folder and its masks folder (None:
    the masks lie beside the images)."""

    label: str
    images_dir: Path
    masks_dir: Path | None = None


def check_settings(groups: Sequence[GroupInput], output: Path, num_items: int, readers: Sequence[str],
                   crop_mm: float, min_voxels: int, channel_names: Sequence[str] | None) -> None:
    """The checks that need no image: one sentence per problem."""
    if len(groups) != 2:
        raise LdiffError(f"a reader study compares two groups of scans, not {len(groups)}.")
    labels = [group.label for group in groups]
    for label in labels:
        if not LABEL_PATTERN.match(label) or label.lower() in RESERVED_COLUMNS + YES + NO:
            raise LdiffError(f"--labels: {label!r} cannot name a group; use a letter followed by letters, digits, "
                             "_ or - (not item_id, confidence or an answer such as yes or no).")
    if labels[0].lower() == labels[1].lower():
        raise LdiffError(f"--labels: the two groups need different names (got {labels[0]} twice).")
    if num_items < 2 or num_items % 2:
        raise LdiffError(f"-n/--items must be an even number of at least 2 (half from each group); got {num_items}.")
    if not readers:
        raise LdiffError("--readers: name at least one reader (one answer sheet each).")
    for reader in readers:
        if not NAME_PATTERN.match(reader):
            raise LdiffError(f"--readers: {reader!r} cannot name a sheet file; use letters, digits, _, - and . only.")
    if len({reader.lower() for reader in readers}) != len(readers):
        raise LdiffError(f"--readers: the names must be distinct (got {' '.join(readers)}).")
    if not np.isfinite(crop_mm) or crop_mm <= 0:
        raise LdiffError(f"--crop-mm must be a positive length in mm; got {crop_mm}.")
    if min_voxels < 1:
        raise LdiffError(f"--min-voxels must be at least 1; got {min_voxels}.")
    if channel_names is not None and len(set(channel_names)) != len(channel_names):
        raise LdiffError(f"--channel-names must be distinct (got {' '.join(channel_names)}).")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise LdiffError(f"{output}: already exists and is not an empty folder; choose a new output folder.")
    for group in groups:
        for folder in (group.images_dir, group.masks_dir):
            if folder is not None and output.resolve() == folder.resolve():
                raise LdiffError(f"{output}: the output folder is an input folder; choose another.")


def opaque_ids(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct random ids of :data:`ID_LENGTH` characters, sorted (the presentation order)."""
    ids: set[str] = set()
    while len(ids) < count:
        first = ID_LETTERS[int(rng.integers(len(ID_LETTERS)))]
        rest = "".join(ID_ALPHABET[int(i)] for i in rng.integers(len(ID_ALPHABET), size=ID_LENGTH - 1))
        ids.add(first + rest)
    return sorted(ids)


def choose_lesions(candidates: Sequence[Sequence[LesionCandidate]], per_group: int, labels: Sequence[str],
                   min_voxels: int, rng: np.random.Generator) -> list[LesionCandidate]:
    """``per_group`` lesions of each group, uniformly at random without replacement."""
    chosen: list[LesionCandidate] = []
    for group_candidates, label in zip(candidates, labels):
        if len(group_candidates) < per_group:
            cases = len({candidate.case.case for candidate in group_candidates})
            raise LdiffError(f"the {label} group has {len(group_candidates)} lesion(s) of at least {min_voxels} "
                             f"voxels in {cases} case(s), but the set needs {per_group} per group; lower -n or "
                             "--min-voxels, or add cases.")
        picks = rng.choice(len(group_candidates), size=per_group, replace=False)
        chosen.extend(group_candidates[int(index)] for index in sorted(picks))
    return chosen


def _scan_lesions(cases: Sequence, group: int, min_voxels: int, progress: bool) -> list[LesionCandidate]:
    found: list[LesionCandidate] = []
    for case in tqdm(cases, desc=f"finding lesions ({group + 1}/2)", unit="case", disable=not progress, leave=False):
        found.extend(case_lesions(case, group, min_voxels))
    return found


def _extract(chosen: Sequence[LesionCandidate], crop_mm: float, mark: bool, progress: bool
             ) -> dict[int, tuple[list[sitk.Image], sitk.Image | None, tuple[float, ...]]]:
    """Crops of every chosen lesion, reading each case once: index in ``chosen`` -> (channel crops, lesion
    mask crop or None, world position of the centre)."""
    by_case: dict[tuple[int, str], list[int]] = defaultdict(list)
    for index, candidate in enumerate(chosen):
        by_case[(candidate.group, candidate.case.case)].append(index)
    crops = {}
    for indices in tqdm(by_case.values(), desc="cropping", unit="case", disable=not progress, leave=False):
        images, labels = load_case_images(chosen[indices[0]].case)
        arrays = [sitk.GetArrayViewFromImage(image) for image in images]
        half = crop_half_sizes(crop_mm, images[0].GetSpacing())
        for index in indices:
            candidate = chosen[index]
            channels = [crop_image(image, array, candidate.centre_xyz, half) for image, array in zip(images, arrays)]
            lesion = None
            if mark:
                lesion = crop_image(images[0], (labels == candidate.label).astype(np.uint8), candidate.centre_xyz,
                                    half, dtype=np.uint8)
            world = images[0].TransformIndexToPhysicalPoint([int(v) for v in candidate.centre_xyz])
            crops[index] = (channels, lesion, tuple(float(v) for v in world))
    return crops


def _warn_about_cues(chosen: Sequence[LesionCandidate], labels: Sequence[str]) -> dict:
    """Per-group size summary of the chosen lesions; warns when sizes or spacings could tell the groups apart."""
    summary = {}
    for group, label in enumerate(labels):
        voxels = [c.voxels for c in chosen if c.group == group]
        summary[label] = {"median_voxels": float(np.median(voxels)), "min_voxels": int(min(voxels)),
                          "max_voxels": int(max(voxels))}
    medians = [summary[label]["median_voxels"] for label in labels]
    if max(medians) > SIZE_RATIO_WARNING * min(medians):
        logger.warning("the chosen %s lesions have a median of %.0f voxels, the %s lesions %.0f: readers may "
                       "tell the groups apart by size.", labels[0], medians[0], labels[1], medians[1])
    shared = {c.case.case for c in chosen if c.group == 0} & {c.case.case for c in chosen if c.group == 1}
    if shared:
        logger.warning("both groups have items from cases named %s; if these are the same scans, readers may "
                       "recognise places they have seen in the other group.", ", ".join(sorted(shared)[:3]))
    return summary


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _instructions(num_items: int, labels: Sequence[str], crop_mm: float, mark: bool) -> str:
    where = "the red outline marks it" if mark else "the yellow ticks on the edges of every panel point at it"
    return (f"Reader study: {num_items} items.\n\n"
            f"Each item is a cube of {crop_mm:g} mm around one lesion, at the cube's centre:\n"
            f"  {{id}}_0000.nii.gz, {{id}}_0001.nii.gz, ...  one file per channel (open them in any NIfTI viewer);\n"
            f"  {{id}}.png  three planes through the lesion, one row per channel ({where}).\n\n"
            f"Some lesions are {labels[1]}, the others {labels[0]}. In your sheet, write in the column "
            f"'{labels[1]}' yes if you think the item's lesion is {labels[1]} and no if you think it is "
            f"{labels[0]}; answer every item. The column 'confidence' is optional: 1 (a guess) to 5 (certain).\n")


def make_reader_study(groups: Sequence[GroupInput], output: Path, num_items: int, readers: Sequence[str],
                      crop_mm: float = 48.0, min_voxels: int = 10, mark: bool = False, seed: int = 0,
                      channel_names: Sequence[str] | None = None, progress: bool = True) -> dict:
    """Build the blinded set of ``num_items`` items in ``output`` (a new or empty folder).

    Args:
        groups: (A, B): A the reference group, B the generated one (a detection is calling a B item B).
        num_items: even; half from each group.
        readers: one sheet each, ``sheets/{reader}.csv``.
        crop_mm: side of the cube around each lesion centre, in mm (rounded to an odd voxel count).
        min_voxels: lesions with fewer voxels are never shown.
        mark: outline the lesion in the montages (and write its mask) instead of only pointing at it.
        seed: the choice of lesions and the ids are a function of the inputs and this seed.
        channel_names: row labels of the montages (default ``channel 0``, ...).

    Returns:
        the content of ``study.json``.
    """
    from ldiff import __version__

    output = Path(output)
    check_settings(groups, output, num_items, readers, crop_mm, min_voxels, channel_names)
    labels = [group.label for group in groups]
    cases = [find_cases(group.images_dir, group.masks_dir, group.label) for group in groups]
    channel_counts = {len(case.image_files) for group_cases in cases for case in group_cases}
    if len(channel_counts) != 1:
        counts = [sorted({len(case.image_files) for case in group_cases}) for group_cases in cases]
        raise LdiffError(f"the cases have different numbers of channels ({labels[0]}: {counts[0]}, {labels[1]}: "
                         f"{counts[1]}); every item must show the same channels, or the count tells the groups apart.")
    num_channels = channel_counts.pop()
    if channel_names is not None and len(channel_names) != num_channels:
        raise LdiffError(f"--channel-names gives {len(channel_names)} name(s) but the scans have {num_channels} "
                         "channel(s).")
    candidates = [_scan_lesions(group_cases, group, min_voxels, progress) for group, group_cases in enumerate(cases)]
    rng = np.random.default_rng(seed)
    chosen = choose_lesions(candidates, num_items // 2, labels, min_voxels, rng)
    ids = opaque_ids(rng, num_items)
    # The ids are sorted and random, so pairing them with a random permutation of the lesions makes the
    # presentation order (sorted ids) a random order of the groups.
    order = [int(i) for i in rng.permutation(num_items)]
    size_summary = _warn_about_cues(chosen, labels)
    crops = _extract(chosen, crop_mm, mark, progress)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's owner-only mode would otherwise stay on the set
    try:
        key_rows = []
        # Written in presentation order, so not even the files' times group the items by source.
        for item_id, index in tqdm(list(zip(ids, order)), desc="writing items", unit="item", disable=not progress):
            candidate = chosen[index]
            channels, lesion, world = crops[index]
            for channel, crop in enumerate(channels):
                write_image_atomic(crop, staging / "items" / f"{item_id}_{channel:04d}.nii.gz")
            if lesion is not None:
                write_image_atomic(lesion, staging / "items" / f"{item_id}.nii.gz")
            write_montage(staging / "items" / f"{item_id}.png", channels, title=f"item {item_id}",
                          channel_names=channel_names, outline=lesion)
            key_rows.append([item_id, labels[candidate.group], candidate.group, candidate.case.case,
                             *candidate.centre_xyz, *(f"{v:.3f}" for v in world), candidate.voxels,
                             f"{candidate.volume_mm3:.3f}"])
        with atomic_path(staging / "items" / "README.txt") as temporary:
            temporary.write_text(_instructions(num_items, labels, crop_mm, mark), encoding="utf-8")
        for reader in readers:
            _write_csv(staging / "sheets" / f"{reader}.csv", ("item_id", labels[1], "confidence"),
                       [(item_id, "", "") for item_id in ids])
        _write_csv(staging / "key.csv", KEY_COLUMNS, key_rows)
        study = {
            "tool": "ldiff_reader_study", "ldiff_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "groups": [{"label": group.label, "role": role, "images": str(group.images_dir.resolve()),
                        "masks": str((group.masks_dir or group.images_dir).resolve()), "cases": len(group_cases),
                        "eligible_lesions": len(group_candidates), "items": num_items // 2,
                        "chosen_lesion_size": size_summary[group.label]}
                       for group, role, group_cases, group_candidates
                       in zip(groups, ("reference", "generated"), cases, candidates)],
            "answer_column": labels[1], "num_items": num_items, "item_ids": ids, "readers": list(readers),
            "num_channels": num_channels, "channel_names": list(channel_names) if channel_names else None,
            "crop_mm": crop_mm, "min_voxels": min_voxels, "mark": mark, "seed": seed,
            "key_sha256": hashlib.sha256((staging / "key.csv").read_bytes()).hexdigest(),
        }
        save_json_atomic(study, staging / "study.json")
        if output.exists():
            output.rmdir()  # checked empty above; os.replace needs the name free
        os.replace(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return study
