"""The WMH segmentation challenge (MICCAI 2017): T1 and FLAIR, label 1 = WMH, label 2 = other pathology.

A case is a folder with ``pre/FLAIR.nii.gz`` (and ``pre/T1.nii.gz``, registered to the FLAIR) and the
reference ``wmh.nii.gz`` beside ``pre/`` (or inside it), e.g. ``training/Utrecht/0/`` or
``training/Amsterdam/GE3T/100/``. The ``orig/`` images (own grids) are not used. Cases under a
``test`` folder (the released test set with its annotations) go to imagesTs/labelsTs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ldiff.dataset.converters.common import (
    CaseSkipped,
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

_SPLIT_WORDS = {"training", "train", "test", "testing"}


class WMH2017Converter(Converter):
    format_name = "wmh2017"
    dataset_name = "WMH2017"
    title = "WMH segmentation challenge (MICCAI 2017)"
    url = "https://wmh.isi.uu.nl/ (data: https://doi.org/10.34894/AECRSD)"
    licence = "see the DataverseNL record doi:10.34894/AECRSD (CC BY-NC 4.0 as far as known); cite Kuijf et al. 2019"
    citation = "Kuijf HJ, et al. IEEE Trans Med Imaging 38, 2556-2568 (2019), doi:10.1109/TMI.2019.2905770"
    layout_hint = "Utrecht/0/pre/{T1,FLAIR}.nii.gz and Utrecht/0/wmh.nii.gz"
    options_used = ("wmh_other_label",)

    mask_rule = "wmh.nii.gz: label 1 (WMH) is lesion; label 2 (other pathology) per --wmh-other-label"

    @staticmethod
    def _other(options: ConvertOptions) -> str:
        return options.wmh_other_label or "background"

    def settings(self, options: ConvertOptions) -> dict[str, object]:
        return {"wmh_other_label": self._other(options)}

    def binarise(self, mask: np.ndarray, options: ConvertOptions) -> tuple[np.ndarray, str | None]:
        values = np.unique(mask)
        unexpected = values[~np.isin(values, (0, 1, 2))]
        if unexpected.size:
            raise CaseSkipped(f"wmh.nii.gz holds values other than 0, 1, 2 (e.g. {unexpected[0]:g})")
        other = int(np.count_nonzero(mask == 2))
        rule = self._other(options)
        if other and rule == "skip-case":
            raise CaseSkipped(f"{other} voxels of other pathology (label 2) and --wmh-other-label skip-case")
        lesion = (mask == 1) | ((mask == 2) if rule == "lesion" else False)
        note = f"label 2 (other pathology): {other} voxels, made {rule}" if other else None
        return lesion.astype(np.uint8), note

    def discover(self, source: Path, options: ConvertOptions) -> Discovery:
        discovery = Discovery()
        for flair in walk_files(source, skip_folders=("orig",)):
            if flair.name not in ("FLAIR.nii.gz", "FLAIR.nii") or flair.parent.name != "pre":
                continue
            folder = flair.parent.parent
            test = is_test_path(folder, source)
            parts = [p for p in Path(relative(folder, source)).parts if p.lower() not in _SPLIT_WORDS and p != "."]
            identifier = safe_identifier("WMH2017", "test" if test else "", *parts)
            channels = {"FLAIR": flair}
            t1 = find_nifti(flair.parent, "T1")
            if t1 is not None:
                channels["T1w"] = t1
            mask = find_nifti(folder, "wmh") or find_nifti(flair.parent, "wmh")
            where = relative(folder, source)
            if mask is None:
                discovery.skipped.append(SkippedSource(where, "no wmh.nii.gz", identifier))
                continue
            discovery.cases.append(SourceCase(identifier, where, channels, mask, "Ts" if test else "Tr",
                                              relative(flair.parent, source)))
        discovery.notes.append("images: pre/T1.nii.gz and pre/FLAIR.nii.gz (T1 registered to the FLAIR); "
                               f"label 2 (other pathology) made {self._other(options)}")
        return discovery
