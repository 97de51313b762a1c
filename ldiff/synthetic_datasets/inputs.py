"""What ``ldiff_synthesize_dataset`` reads: healthy scans, their channels by name, real cases to add, the model.

Healthy scans come from one of two places:

* a folder (``-i DIR``) of nnU-Net-named files ``{case}_0000{ending}``, ``{case}_0001{ending}``, ...
  whose channels ``--channel-names`` names in file order (default: the model's channel names, in the
  model's order); tissue maps (0 background, 1 CSF, 2 GM, 3 WM), if any, are ``--tissue DIR/{case}{ending}``;
* a raw dataset (``-d SOURCE``): its ``healthyTr`` (the lesion-free twins of datasets with simulated
  lesions, with ``tissueTr`` as tissue maps) when it has one, else the ``imagesTr`` cases whose label
  is empty. Only the training split is used: a segmentation model trained on the new dataset then
  never saw the source's test subjects.

Channels are matched by name (exactly, else ignoring case) with the model's ``channel_names``; the
new dataset holds the model's channels in the model's order, and a scan's other channels are left
out. Every file is checked up front from its header (it exists, is a 3D image and shares its case's
grid), so a run refuses bad inputs before it writes anything.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ldiff.dataset.raw import RawDataset
from ldiff.errors import LdiffError
from ldiff.io.cases import find_case_channels
from ldiff.io.images import geometry_mismatch, read_geometry
from ldiff.tasks import SYNTHESIS_TASK_NAMES

logger = logging.getLogger("ldiff")

SYNTHESIS_TASKS = SYNTHESIS_TASK_NAMES  # cond_synth, uncond_synth


@dataclass(frozen=True)
class SourceCase:
    """One case to read: ``files`` maps channel name to file; ``label_file`` and ``healthy_files`` (the
    lesion-free twin, by channel name) only for real cases added with ``--add-real``."""

    case: str
    files: dict[str, Path]
    tissue_file: Path | None = None
    label_file: Path | None = None
    healthy_files: dict[str, Path] | None = None

    def in_channels(self, names: Sequence[str], where: Path, model_folder: Path) -> "SourceCase":
        """This case with ``files`` (and ``healthy_files``) holding exactly ``names``, in that order, matched
        exactly, else ignoring case; one sentence naming ``where`` when a channel is missing."""
        by_fold = {name.casefold(): name for name in self.files}
        missing = [name for name in names if name not in self.files and name.casefold() not in by_fold]
        if missing:
            raise LdiffError(f"{where}: has no channel {', '.join(missing)} (it has {', '.join(self.files)}); the "
                             f"model {model_folder} needs {', '.join(names)}.")
        found = [name if name in self.files else by_fold[name.casefold()] for name in names]
        healthy = None if self.healthy_files is None else {new: self.healthy_files[old] for new, old in zip(names, found)}
        return dataclasses.replace(self, files={new: self.files[old] for new, old in zip(names, found)},
                                   healthy_files=healthy)


def check_headers(case: SourceCase) -> None:
    """Every file of the case (channels, label, tissue map, healthy twin) exists, is 3D and shares one grid."""
    extra = [case.label_file, case.tissue_file, *(case.healthy_files or {}).values()]
    paths = [*case.files.values(), *(path for path in extra if path is not None)]
    reference = read_geometry(paths[0])
    for path in paths[1:]:
        mismatch = geometry_mismatch(reference, read_geometry(path))
        if mismatch is not None:
            raise LdiffError(f"{path}: its grid differs from {paths[0]} ({mismatch}); all files of case {case.case} "
                             f"must share one grid.")


def channel_file_count(folder: Path) -> int:
    """How many channel files the first case of ``folder`` has (a folder of ``{case}_XXXX`` scans)."""
    found = _folder_cases(folder)
    return len(found[0].files)


def _folder_cases(folder: Path) -> list:
    if not folder.exists():
        raise LdiffError(f"{folder}: the folder of healthy scans does not exist.")
    if not folder.is_dir():
        raise LdiffError(f"{folder}: is not a folder; -i takes a folder of {{case}}_0000.nii.gz healthy scans.")
    found = find_case_channels(folder)
    if not found:
        raise LdiffError(f"{folder}: contains no healthy scans named {{case}}_0000.nii.gz (or .nii).")
    return found


def scans_from_folder(folder: Path, channel_names: Sequence[str], tissue: Path | None) -> list[SourceCase]:
    """The healthy scans of a folder; file ``{case}_{i:04d}`` is channel ``channel_names[i]``."""
    if tissue is not None and not tissue.is_dir():
        raise LdiffError(f"{tissue}: --tissue must be a folder of {{case}}.nii.gz tissue maps.")
    scans = []
    for found in _folder_cases(folder):
        numbered = {int(channel): path for channel, path in found.files}
        extra = sorted(index for index in numbered if index >= len(channel_names))
        if extra:
            raise LdiffError(f"{numbered[extra[0]]}: case {found.case} has channel {extra[0]} but only "
                             f"{len(channel_names)} channel name(s) are known ({', '.join(channel_names)}); name "
                             f"every channel with --channel-names.")
        files = {}
        for index, name in enumerate(channel_names):
            path = numbered.get(index, folder / f"{found.case}_{index:04d}{found.ending}")
            if index not in numbered:
                raise LdiffError(f"{path}: channel {index} ({name}) of case {found.case} is missing.")
            files[name] = path
        tissue_file = None
        if tissue is not None:
            tissue_file = tissue / f"{found.case}{found.ending}"
            if not tissue_file.is_file():
                raise LdiffError(f"{tissue_file}: tissue map of case {found.case} not found.")
        scans.append(SourceCase(found.case, files, tissue_file))
    return scans


def _label_is_empty(path: Path) -> bool:
    import SimpleITK as sitk

    from ldiff.io import read_image

    image = read_image(path)  # held: a view of a discarded image would read freed memory
    return not sitk.GetArrayViewFromImage(image).any()


def scans_from_dataset(dataset: RawDataset) -> list[SourceCase]:
    """The healthy training scans of a raw dataset: ``healthyTr`` when present, else the empty-label cases."""
    cases = dataset.cases("Tr")
    if (dataset.folder / "healthyTr").is_dir():
        return [SourceCase(case.identifier, dict(zip(dataset.channel_names, case.healthy_files)), case.tissue_file)
                for case in cases if case.healthy_files is not None]
    healthy = [SourceCase(case.identifier, dict(zip(dataset.channel_names, case.image_files)), case.tissue_file)
               for case in cases if case.label_file is not None and case.label_file.is_file()
               and _label_is_empty(case.label_file)]
    if not healthy:
        raise LdiffError(f"{dataset.folder}: has no healthyTr and no training case with an empty label, so it holds "
                         f"no healthy scans to put lesions into.")
    logger.info("%s: no healthyTr; using the %d training case(s) whose label is empty", dataset.name, len(healthy))
    return healthy


def real_cases(dataset: RawDataset) -> list[SourceCase]:
    """Every training case of ``dataset`` (images, label, tissue map and healthy twin where present)."""
    cases = dataset.cases("Tr")
    if not cases:
        raise LdiffError(f"{dataset.folder / 'imagesTr'}: holds no training cases to add.")
    return [SourceCase(case.identifier, dict(zip(dataset.channel_names, case.image_files)), case.tissue_file,
                       case.label_file,
                       None if case.healthy_files is None else dict(zip(dataset.channel_names, case.healthy_files)))
            for case in cases]


def choose_synthesis_model(model_folder: str | Path | None, checkpoint: str, channel_names: Sequence[str] | None,
                           num_channels: int) -> Path:
    """The model that paints the lesions: ``-m``, else the one synthesis model whose channels the scans have.

    Candidates are the trained fold folders and the demo models of a synthesis task (cond_synth,
    uncond_synth) whose channels all occur in ``channel_names`` (unknown names: whose channel count
    is ``num_channels``); a single model trained by the user beats the demo models, as in ldiff_predict.
    """
    from ldiff.inference.model_loading import choose_model_folder, find_models

    if model_folder is not None:
        return choose_model_folder(model_folder, checkpoint=checkpoint)
    known = None if channel_names is None else {name.casefold() for name in channel_names}
    candidates = [c for c in find_models(checkpoint) if c.task in SYNTHESIS_TASKS and (
        {name.casefold() for name in c.channel_names} <= known if known is not None
        else len(c.channel_names) == num_channels)]
    trained = [c for c in candidates if not c.demo]
    pool = trained or candidates
    if len(pool) == 1:
        return pool[0].folder
    channels = ", ".join(channel_names) if channel_names is not None else f"{num_channels} channel(s)"
    if not pool:
        raise LdiffError(f"No synthesis model ({' or '.join(SYNTHESIS_TASKS)}) for the channels {channels} was found "
                         f"among the trained and demo models; train one or give its folder with -m.")
    raise LdiffError(f"{len(pool)} synthesis models fit the channels {channels}; choose one with -m: "
                     + "; ".join(candidate.describe() for candidate in pool) + ".")
