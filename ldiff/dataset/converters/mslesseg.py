"""MSLesSeg (ICPR 2024 challenge; Guarnera et al. 2025): MNI-registered T1, T2, FLAIR and a mask per scan.

Files: ``train/P1/T1/P1_T1_{T1,T2,FLAIR,MASK}.nii.gz`` (patient P1 at timepoint T1; later timepoints
T2, T3, ...) and the official test split ``test/P54/P54_{T1,T2,FLAIR,MASK}.nii.gz`` (one scan per
patient), which goes to imagesTs/labelsTs.
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
    is_test_path,
    keep_first_timepoints,
    relative,
    walk_files,
)

_FILE = re.compile(r"^P(?P<patient>\d+)(?:_T(?P<timepoint>\d+))?_(?P<kind>T1|T2|FLAIR|MASK)\.nii(?:\.gz)?$")
_CHANNELS = {"T1": "T1w", "T2": "T2w", "FLAIR": "FLAIR"}


class MSLesSegConverter(Converter):
    format_name = "mslesseg"
    dataset_name = "MSLesSeg"
    title = "MSLesSeg (ICPR 2024 MS lesion segmentation challenge)"
    url = "https://iplab.dmi.unict.it/mfs/ms-les-seg/"
    licence = "CC BY 4.0 (figshare release); cite Guarnera et al. 2025"
    citation = "Guarnera F, et al. Sci Data 12, 920 (2025), doi:10.1038/s41597-025-05250-y"
    layout_hint = "train/P1/T1/P1_T1_{T1,FLAIR,MASK}.nii.gz or test/P54/P54_{T1,FLAIR,MASK}.nii.gz"
    options_used = ("timepoints",)
    mask_rule = "*_MASK.nii.gz: any value > 0 is lesion (non-integer values: >= 0.5)"

    def settings(self, options: ConvertOptions) -> dict[str, object]:
        return {"timepoints": options.timepoints or "first"}

    def discover(self, source: Path, options: ConvertOptions) -> Discovery:
        scans: dict[tuple[Path, str, int | None], dict] = {}
        for path in walk_files(source):
            match = _FILE.match(path.name)
            if match is None:
                continue
            timepoint = int(match["timepoint"]) if match["timepoint"] else None
            scan = scans.setdefault((path.parent, match["patient"], timepoint), {"channels": {}, "mask": None})
            if match["kind"] == "MASK":
                scan["mask"] = path
            else:
                scan["channels"][_CHANNELS[match["kind"]]] = path
        discovery = Discovery()
        patient_of, timepoint_of = {}, {}
        for (folder, patient, timepoint), scan in sorted(scans.items(), key=lambda item: (str(item[0][0]), int(item[0][1]), item[0][2] or 0)):
            test = is_test_path(folder, source)
            name = f"P{int(patient):02d}" + (f"_tp{timepoint}" if timepoint is not None else "")
            identifier = f"MSLesSeg_{'test_' if test else ''}{name}"
            where = relative(folder, source)
            if scan["mask"] is None:
                discovery.skipped.append(SkippedSource(where, f"no mask (P{patient}{'_T' + str(timepoint) if timepoint else ''}_MASK.nii.gz)", identifier))
                continue
            discovery.cases.append(SourceCase(identifier, where, scan["channels"], scan["mask"],
                                              "Ts" if test else "Tr", where))
            patient_of[identifier] = f"{'test' if test else 'train'}{int(patient)}"
            timepoint_of[identifier] = timepoint or 1
        discovery.cases, later = keep_first_timepoints(discovery.cases, patient_of, timepoint_of,
                                                       options.timepoints or "first")
        discovery.skipped.extend(later)
        discovery.notes.append(f"images: the MNI-registered T1/T2/FLAIR of each scan; timepoints: {options.timepoints or 'first'}")
        return discovery
