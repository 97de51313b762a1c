"""ISBI-2015 longitudinal MS lesion segmentation challenge: two raters' masks per scan.

Files: ``training/training01/preprocessed/training01_01_{flair,mprage,pd,t2}_pp.nii`` (co-registered to
the MNI template, one grid) and ``training/training01/masks/training01_01_mask{1,2}.nii``. A scan is a
patient (``01``) at a timepoint (``_01``); ``--rater`` picks the mask, ``--timepoints`` the scans. The
test scans have no masks and are listed as skipped.
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

_FILE = re.compile(r"^(?P<kind>[A-Za-z]+?)(?P<patient>\d+)_(?P<timepoint>\d+)_"
                   r"(?:(?P<modality>flair|mprage|pd|t2)_pp|mask(?P<rater>\d))\.nii(?:\.gz)?$")
_CHANNELS = {"mprage": "T1w", "flair": "FLAIR", "t2": "T2w", "pd": "PDw"}


class ISBI2015Converter(Converter):
    format_name = "isbi2015"
    dataset_name = "ISBI2015"
    title = "ISBI-2015 longitudinal MS lesion segmentation challenge"
    url = "https://smart-stats-tools.org/lesion-challenge"
    licence = ("free for research after registration on smart-stats-tools.org; "
               "cite Carass et al. 2017 (NeuroImage)")
    citation = "Carass A, et al. NeuroImage 148, 77-102 (2017), doi:10.1016/j.neuroimage.2016.12.064"
    layout_hint = "training/training01/preprocessed/training01_01_flair_pp.nii and masks/training01_01_mask1.nii"
    options_used = ("rater", "timepoints")
    mask_rule = "maskN.nii of the chosen rater: any value > 0 is lesion (non-integer values: >= 0.5)"

    def settings(self, options: ConvertOptions) -> dict[str, object]:
        return {"rater": options.rater or 1, "timepoints": options.timepoints or "first"}

    def discover(self, source: Path, options: ConvertOptions) -> Discovery:
        rater = options.rater or 1
        scans: dict[tuple[str, str, str], dict] = {}
        for path in walk_files(source, skip_folders=("orig",)):
            match = _FILE.match(path.name)
            if match is None:
                continue
            key = (match["kind"].lower(), match["patient"], match["timepoint"])
            scan = scans.setdefault(key, {"channels": {}, "masks": {}, "folder": path.parent.parent})
            if match["modality"]:
                scan["channels"][_CHANNELS[match["modality"]]] = path
            else:
                scan["masks"][int(match["rater"])] = path
        discovery = Discovery()
        patient_of, timepoint_of = {}, {}
        for (kind, patient, timepoint), scan in sorted(scans.items()):
            test = kind.startswith("test") or is_test_path(scan["folder"], source)
            identifier = f"ISBI2015_{'test_' if test else ''}P{int(patient):02d}T{int(timepoint):02d}"
            where = relative(scan["folder"], source) + f" ({kind}{patient}_{timepoint})"
            if rater not in scan["masks"]:
                reason = (f"no mask{rater} (the challenge's test scans have no masks)" if not scan["masks"]
                          else f"no mask of rater {rater} (masks of rater(s) {sorted(scan['masks'])} only)")
                discovery.skipped.append(SkippedSource(where, reason, identifier))
                continue
            case = SourceCase(identifier, where, scan["channels"], scan["masks"][rater], "Tr",
                              relative(scan["folder"], source) + "/preprocessed")
            discovery.cases.append(case)
            patient_of[identifier], timepoint_of[identifier] = f"{kind}{patient}", int(timepoint)
        discovery.cases, later = keep_first_timepoints(discovery.cases, patient_of, timepoint_of,
                                                       options.timepoints or "first")
        discovery.skipped.extend(later)
        discovery.notes.append(f"images: preprocessed/*_pp.nii (MNI-registered, one grid); mask: rater {rater} "
                               f"(mask{rater}); timepoints: {options.timepoints or 'first'}")
        return discovery
