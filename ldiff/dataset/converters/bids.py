"""A BIDS dataset with lesion masks in ``derivatives/``.

Images: ``sub-XX[/ses-YY]/anat/sub-XX[_ses-YY][_entities]_{T1w,FLAIR,T2w,PDw}.nii[.gz]`` (a T1w with a
``ce-`` entity is the contrast-enhanced T1wKS). Masks: ``derivatives/<pipeline>/sub-XX[/ses-YY]/anat/``
files matching ``--bids-mask-pattern`` (default ``*label-lesion*_mask.nii.gz``). A case is a subject, or
a subject's session; a case with several candidate files for one channel or several masks is skipped
(ambiguous), since picking one silently could pair the wrong files.
"""
from __future__ import annotations

import json
from pathlib import Path

from ldiff.dataset.converters.common import (
    DEFAULT_BIDS_MASK_PATTERN,
    Converter,
    ConvertOptions,
    Discovery,
    SkippedSource,
    SourceCase,
    nifti_stem,
    relative,
    safe_identifier,
)

_SUFFIXES = {"T1w": "T1w", "FLAIR": "FLAIR", "T2w": "T2w", "PDw": "PDw"}


def _sessions(source: Path) -> list[tuple[str, str | None, Path]]:
    """(subject, session or None, anat folder) of every subject/session with an anat folder."""
    found = []
    for subject in sorted(p for p in source.glob("sub-*") if p.is_dir()):
        sessions = sorted(p for p in subject.glob("ses-*") if p.is_dir())
        for folder, session in ([(s, s.name) for s in sessions] or [(subject, None)]):
            if (folder / "anat").is_dir():
                found.append((subject.name, session, folder / "anat"))
    return found


def _channel_of(path: Path, prefix: str) -> str | None:
    stem = nifti_stem(path)
    if stem is None or not stem.startswith(prefix):
        return None
    entities = stem[len(prefix):].split("_")
    channel = _SUFFIXES.get(entities[-1])
    if channel == "T1w" and any(entity.startswith("ce-") for entity in entities[:-1]):
        return "T1wKS"
    return channel


class BIDSConverter(Converter):
    format_name = "bids"
    dataset_name = "BIDS"
    title = "BIDS dataset with lesion masks in derivatives"
    url = "https://bids-specification.readthedocs.io/"
    licence = "the dataset's own (the License field of dataset_description.json)"
    citation = ""
    layout_hint = "sub-01/anat/sub-01_FLAIR.nii.gz and derivatives/<pipeline>/sub-01/anat/sub-01_label-lesion_mask.nii.gz"
    options_used = ("bids_mask_pattern",)

    def settings(self, options: ConvertOptions) -> dict[str, object]:
        return {"bids_mask_pattern": options.bids_mask_pattern or DEFAULT_BIDS_MASK_PATTERN}

    def discover(self, source: Path, options: ConvertOptions) -> Discovery:
        pattern = options.bids_mask_pattern or DEFAULT_BIDS_MASK_PATTERN
        discovery = Discovery()
        description = source / "dataset_description.json"
        if description.is_file():
            try:
                info = json.loads(description.read_text(encoding="utf-8"))
                discovery.notes.append(f"dataset: {info.get('Name', '?')}; licence: {info.get('License', 'not stated')}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                discovery.notes.append(f"{description.name} is not valid JSON; licence unknown")
        for subject, session, anat in _sessions(source):
            prefix = f"{subject}_{session}_" if session else f"{subject}_"
            identifier = safe_identifier(subject, session or "")
            where = relative(anat, source)
            candidates: dict[str, list[Path]] = {}
            for path in sorted(anat.iterdir()):
                channel = _channel_of(path, prefix)
                if channel is not None and path.is_file():
                    candidates.setdefault(channel, []).append(path)
            relative_anat = Path(subject, session, "anat") if session else Path(subject, "anat")
            masks = sorted(m for m in source.glob(f"derivatives/*/{relative_anat.as_posix()}/{pattern}")
                           if m.name.startswith(prefix) and nifti_stem(m) is not None)
            ambiguous = {c: paths for c, paths in candidates.items() if len(paths) > 1}
            if not masks:
                discovery.skipped.append(SkippedSource(where, f"no mask matching derivatives/*/{relative_anat.as_posix()}/{pattern}", identifier))
            elif len(masks) > 1:
                discovery.skipped.append(SkippedSource(where, "several masks match: " + ", ".join(relative(m, source) for m in masks), identifier))
            elif ambiguous:
                channel, paths = next(iter(ambiguous.items()))
                discovery.skipped.append(SkippedSource(where, f"several {channel} images: " + ", ".join(p.name for p in paths), identifier))
            else:
                channels = {channel: paths[0] for channel, paths in candidates.items()}
                discovery.cases.append(SourceCase(identifier, where, channels, masks[0], "Tr", where))
        discovery.notes.append(f"images: sub-*/[ses-*/]anat/*_{{T1w,FLAIR,T2w,PDw}}; masks: derivatives/*/.../anat/{pattern}")
        return discovery
