"""The Ljubljana 3D MS dataset (Lesjak et al. 2017): 30 patients, consensus of three raters.

Each ``patientNN`` folder is one case. Supported namings:

- the original distribution: ``patientNN_{T1W,T1WKS,T2W,FLAIR}.nii.gz`` and ``patientNN_consensus_gt.nii.gz``
  (all co-registered to the patient's FLAIR; the ``raw/`` subfolder, in each image's own space, is not used);
- the same without the ``patientNN_`` prefix (the ``coregistered/`` folder of the open_ms_data mirror);
- the MNI mirror: ``T1.nii.gz``, ``FLAIR.nii.gz`` (``T2.nii.gz``, ``T1POST.nii.gz``) and ``lesion_mask.nii.gz``,
  or the long names ``FLAIR_N4_..._regtoMNI.nii.gz`` and ``GOLD_STANDARD_..._regtoMNI.nii.gz``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ldiff.dataset.converters.common import (
    Converter,
    ConvertOptions,
    Discovery,
    SkippedSource,
    SourceCase,
    find_nifti,
    relative,
    safe_identifier,
)

_PATIENT = re.compile(r"^patient(\d+)$", re.IGNORECASE)
_CHANNEL_STEMS = {
    "T1w": ("T1W", "T1"),
    "FLAIR": ("FLAIR",),
    "T2w": ("T2W", "T2"),
    "T1wKS": ("T1WKS", "T1POST"),
}
_MASK_STEMS = ("consensus_gt", "lesion_mask")
# The open_ms_data MNI folder names files by the processing they went through.
_LONG_MNI = {"T1w": "T1_N4_*regtoMNI", "FLAIR": "FLAIR_N4_*regtoMNI", "T2w": "T2_N4_*regtoMNI",
             "T1wKS": "T1POST_N4_*regtoMNI"}
_LONG_MNI_MASK = "GOLD_STANDARD_*regtoMNI"


def _glob_one(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern + ".nii.gz")) + sorted(folder.glob(pattern + ".nii"))
    return found[0] if len(found) == 1 else None


def _patient_folders(source: Path) -> list[Path]:
    found = []
    for root, folders, _ in os.walk(source):
        folders[:] = sorted(f for f in folders if f != "raw" and not f.startswith("."))
        found.extend(Path(root) / f for f in folders if _PATIENT.match(f))
    return found


class LjubljanaConverter(Converter):
    format_name = "ljubljana"
    dataset_name = "Ljubljana"
    title = "Ljubljana 3D MS dataset (Lesjak et al. 2017)"
    url = "http://lit.fe.uni-lj.si/tools.php?lang=eng"
    licence = "CC-BY; cite Lesjak et al. 2017"
    citation = ("Lesjak Z, Pernus F, Likar B, Spiclin Z. Neuroinformatics 16, 51-63 (2018), "
                "doi:10.1007/s12021-017-9348-7")
    layout_hint = "patientNN/patientNN_{T1W,FLAIR}.nii.gz + patientNN_consensus_gt.nii.gz, or patientNN/{T1,FLAIR,lesion_mask}.nii.gz"
    mask_rule = "consensus_gt / lesion_mask: any value > 0 is lesion (non-integer values: >= 0.5)"

    def discover(self, source: Path, options: ConvertOptions) -> Discovery:
        discovery = Discovery()
        for folder in _patient_folders(source):
            number = int(_PATIENT.match(folder.name).group(1))
            prefix = f"{folder.name}_"
            identifier = safe_identifier("Ljubljana", f"patient{number:02d}")
            if any(case.identifier == identifier for case in discovery.cases):
                identifier = safe_identifier("Ljubljana", relative(folder, source))
            channels = {}
            for channel, stems in _CHANNEL_STEMS.items():
                path = find_nifti(folder, *(prefix + s for s in stems), *stems) or _glob_one(folder, _LONG_MNI[channel])
                if path is not None:
                    channels[channel] = path
            mask = (find_nifti(folder, *(prefix + s for s in _MASK_STEMS), *_MASK_STEMS)
                    or _glob_one(folder, _LONG_MNI_MASK))
            where = relative(folder, source)
            if mask is None:
                discovery.skipped.append(SkippedSource(where, "no consensus mask (patientNN_consensus_gt.nii.gz "
                                                       "or lesion_mask.nii.gz)", identifier))
            elif not channels:
                discovery.skipped.append(SkippedSource(where, "no images (T1W, T1WKS, T2W, FLAIR)", identifier))
            else:
                discovery.cases.append(SourceCase(identifier, where, channels, mask, "Tr", where))
        discovery.notes.append("images: the co-registered files in each patient folder (raw/ is not used); "
                               "mask: the three-rater consensus; brain masks are not used")
        return discovery
