"""MSSEG-2016 (MICCAI 2016 MS lesion segmentation challenge): consensus masks of 7 raters.

A case is a folder holding ``Consensus.nii.gz``, either in ``Masks/`` of the patient folder
(``Training/Center_01/Patient_01/Masks/Consensus.nii.gz``, images in ``Preprocessed_Data/``) or beside
the images (flat patient folders). The pre-processed images (co-registered to the FLAIR, on the
consensus grid) are used; only when a case has none are the unprocessed ones tried, and a channel that
is not on the consensus grid then skips the case (nothing is resampled).
"""
from __future__ import annotations

import re
from pathlib import Path

from ldiff.dataset.converters.common import (
    Converter,
    ConvertOptions,
    Discovery,
    SkippedSource,
    SourceCase,
    find_nifti,
    is_test_path,
    relative,
    safe_identifier,
    walk_files,
)

# Both namings occur: the 2016 challenge release (3DFLAIR, 3DT1, 3DT1GADO) and the later full release
# on Shanoir (FLAIR, T1, GADO). DP is the proton-density image.
_PREPROCESSED = {
    "T1w": ("T1_preprocessed", "3DT1_preprocessed"),
    "FLAIR": ("FLAIR_preprocessed", "3DFLAIR_preprocessed"),
    "T2w": ("T2_preprocessed",),
    "PDw": ("DP_preprocessed",),
    "T1wKS": ("GADO_preprocessed", "3DT1GADO_preprocessed"),
}
_UNPROCESSED = {channel: tuple(stem.replace("_preprocessed", "") for stem in stems)
                for channel, stems in _PREPROCESSED.items()}
_PREPROCESSED_FOLDERS = ("Preprocessed_Data", "Pre-processed_Data", "Preprocessed", ".")
_UNPROCESSED_FOLDERS = ("Raw_Data", "Unprocessed_Data", "Raw", ".")
_MASK_FOLDERS = ("Masks", "ManualSegmentation")
_CENTER = re.compile(r"^Center_?(\d+)$", re.IGNORECASE)
_PATIENT = re.compile(r"^Patient_?(\d+)$", re.IGNORECASE)


def _channels(patient: Path, folders: tuple[str, ...], stems: dict[str, tuple[str, ...]]) -> tuple[dict[str, Path], Path | None]:
    for folder_name in folders:
        folder = patient / folder_name
        found = {channel: path for channel, names in stems.items() if (path := find_nifti(folder, *names))}
        if found:
            return found, folder
    return {}, None


def _identifier(patient: Path, source: Path, test: bool) -> str:
    parts = Path(relative(patient, source)).parts
    center = next((int(m.group(1)) for part in parts if (m := _CENTER.match(part))), None)
    number = next((int(m.group(1)) for part in parts if (m := _PATIENT.match(part))), None)
    name = f"C{center:02d}P{number:02d}" if center is not None and number is not None else patient.name
    return safe_identifier("MSSEG2016", "test" if test else "", name)


class MSSEG2016Converter(Converter):
    format_name = "msseg2016"
    dataset_name = "MSSEG2016"
    title = "MSSEG-2016 (MICCAI 2016 MS lesion segmentation challenge)"
    url = "https://portal.fli-iam.irisa.fr/msseg-challenge/"
    licence = ("free for research after registration on the Shanoir/FLI-IAM platform; "
               "cite Commowick et al. 2018 (Sci Rep) and 2021 (NeuroImage)")
    citation = "Commowick O, et al. Sci Rep 8, 13650 (2018), doi:10.1038/s41598-018-31911-7"
    layout_hint = ("Training/Center_01/Patient_01/Masks/Consensus.nii.gz with "
                   "Preprocessed_Data/{FLAIR,T1}_preprocessed.nii.gz (or 3DFLAIR_/3DT1_preprocessed)")
    mask_rule = "Consensus.nii.gz: any value > 0 is lesion (non-integer values: >= 0.5)"

    def discover(self, source: Path, options: ConvertOptions) -> Discovery:
        discovery = Discovery()
        used_unprocessed = False
        for mask in walk_files(source):
            if mask.name not in ("Consensus.nii.gz", "Consensus.nii"):
                continue
            patient = mask.parent.parent if mask.parent.name in _MASK_FOLDERS else mask.parent
            test = is_test_path(patient, source)
            identifier = _identifier(patient, source, test)
            channels, folder = _channels(patient, _PREPROCESSED_FOLDERS, _PREPROCESSED)
            notes = []
            if not channels:
                channels, folder = _channels(patient, _UNPROCESSED_FOLDERS, _UNPROCESSED)
                if channels:
                    used_unprocessed = True
                    notes.append("no pre-processed images: unprocessed ones used (taken only if on the mask's grid)")
            if not channels:
                discovery.skipped.append(SkippedSource(relative(patient, source), "no images found "
                                                       "(Preprocessed_Data/*_preprocessed.nii.gz)", identifier))
                continue
            discovery.cases.append(SourceCase(identifier, relative(patient, source), channels, mask,
                                              "Ts" if test else "Tr", relative(folder, source), notes))
        discovery.notes.append("images: the pre-processed (denoised, skull-stripped, bias-corrected, "
                               "FLAIR-registered) files; mask: Consensus (the 7 raters' consensus)")
        if used_unprocessed:
            discovery.notes.append("some cases have only unprocessed images; those not on the consensus grid are skipped")
        return discovery
