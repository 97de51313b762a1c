"""Converting a downloaded dataset into ``DatasetNNN_Name``: checks up front, then case by case.

Order: the source layout is read (file names only) and the channels are chosen; the target is checked
(refused when it exists and is not empty, unless ``resume``, which needs the same settings and skips
complete cases); a first report marks the conversion incomplete; each case is read, checked and
written; then dataset.json and the final report are written and the dataset is verified.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

import ldiff
from ldiff.dataset.converters.common import (
    CHANNEL_ORDER,
    DEFAULT_CHANNELS,
    CaseSkipped,
    Converter,
    ConvertOptions,
    SkippedSource,
    SourceCase,
)
from ldiff.dataset.converters.report import report_paths, write_report
from ldiff.dataset.converters.writing import FILE_ENDING, case_is_complete, convert_case
from ldiff.errors import LdiffError
from ldiff.io import load_json, save_json_atomic


@dataclass(frozen=True)
class ConversionResult:
    folder: Path
    training_cases: list[str]
    test_cases: list[str]
    skipped: int
    report: Path


def choose_channels(cases: list[SourceCase], requested: tuple[str, ...] | None, source: Path) -> tuple[list[str], str]:
    """The channels to write (in order) and why; requested names must be standard and present somewhere."""
    if requested:
        unknown = [name for name in requested if name not in CHANNEL_ORDER]
        if unknown:
            raise LdiffError(f"--channels {' '.join(unknown)}: unknown channel name; use {', '.join(CHANNEL_ORDER)}.")
        if len(set(requested)) != len(requested):
            raise LdiffError(f"--channels {' '.join(requested)}: a channel is named twice.")
        absent = [name for name in requested if not any(name in case.channels for case in cases)]
        if absent:
            raise LdiffError(f"{source}: no case has a {absent[0]} image; the cases found have "
                             f"{', '.join(_available(cases)) or 'no known channel'}.")
        return list(requested), "chosen with --channels"
    # "Every case has it" with tolerance: a channel most cases have is kept and the few cases without
    # it are skipped and reported, rather than dropping the channel for everyone.
    chosen = [name for name in DEFAULT_CHANNELS if sum(name in case.channels for case in cases) * 2 > len(cases)]
    if not chosen:
        raise LdiffError(f"{source}: most cases have neither T1w nor FLAIR; choose channels with --channels "
                         f"(found: {', '.join(_available(cases)) or 'none'}).")
    return chosen, "default: those of T1w, FLAIR that most cases have"


def _available(cases: list[SourceCase]) -> list[str]:
    return [name for name in CHANNEL_ORDER if any(name in case.channels for case in cases)]


def _check_target(target: Path, resume: bool, settings: dict[str, Any]) -> dict[str, dict]:
    """Refuse a non-empty target (unless resuming with the same settings); earlier entries by case."""
    if not target.exists() or not any(target.iterdir()):
        return {}
    if not resume:
        raise LdiffError(f"{target}: already exists and is not empty; remove it, choose another -d/--name, "
                         "or pass --continue to complete an interrupted conversion.")
    json_path, _ = report_paths(target)
    if not json_path.is_file():
        raise LdiffError(f"{target}: has no {json_path.name}, so it was not made by ldiff_convert and --continue cannot complete it.")
    previous = load_json(json_path)
    if previous.get("settings") != settings:
        before = previous.get("settings", {})
        changed = sorted(key for key in set(before) | set(settings) if before.get(key) != settings.get(key))
        raise LdiffError(f"{json_path}: the earlier conversion used other settings ({', '.join(changed)}); "
                         "rerun with the same options or remove the folder.")
    return {entry["case"]: entry for entry in previous.get("taken", [])}


_KEPT = "complete before --continue: kept"


def _record(report: dict[str, Any], taken: list[dict[str, Any]], skipped: list[SkippedSource]) -> None:
    report["taken"] = taken
    report["skipped"] = [{"source": s.source, "case": s.identifier, "reason": s.reason} for s in skipped]


def convert_dataset(converter: Converter, source: Path, target: Path, options: ConvertOptions,
                    resume: bool = False, progress: bool = True) -> ConversionResult:
    """Convert ``source`` (a downloaded ``converter`` layout) into the raw dataset folder ``target``."""
    from ldiff.dataset.raw import RawDataset
    from ldiff.dataset.verify import verify_dataset

    source = source.resolve()
    if not source.is_dir():
        raise LdiffError(f"{source}: is not a folder; give the folder the {converter.title} download was unpacked into.")
    unused = [f"--{name.replace('_', '-')}" for name in options.given() if name not in converter.options_used]
    if unused:
        raise LdiffError(f"{' '.join(unused)}: does not apply to the format {converter.format_name}.")
    discovery = converter.discover(source, options)
    if not discovery.cases:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in discovery.skipped[:3])
        raise LdiffError(f"{source}: no usable {converter.title} case found (expected e.g. {converter.layout_hint})"
                         + (f"; {reasons}" if reasons else "") + ".")
    channels, channel_choice = choose_channels(discovery.cases, options.channels, source)
    skipped: list[SkippedSource] = list(discovery.skipped)
    cases = []
    for case in discovery.cases:
        missing = [name for name in channels if name not in case.channels]
        if missing:
            skipped.append(SkippedSource(case.source, f"no {missing[0]} image in {case.searched or case.source}", case.identifier))
        else:
            cases.append(case)
    cases.sort(key=lambda case: (case.split != "Tr", case.identifier))
    seen: dict[tuple[str, str], str] = {}
    for case in cases:
        if (key := (case.split, case.identifier)) in seen:
            raise LdiffError(f"{source}: {seen[key]} and {case.source} would both become case {case.identifier}.")
        seen[key] = case.source
    settings = json.loads(json.dumps({"format": converter.format_name, "source": str(source), "channels": channels,
                                      **converter.settings(options)}))
    earlier = _check_target(target, resume, settings)

    report: dict[str, Any] = {
        "dataset": target.name, "title": converter.title, "status": "incomplete", "settings": settings,
        "channel_choice": channel_choice, "mask_rule": converter.mask_rule, "url": converter.url,
        "licence": converter.licence, "citation": converter.citation, "ldiff_version": ldiff.__version__,
        "notes": discovery.notes, "taken": [], "skipped": [],
    }
    target.mkdir(parents=True, exist_ok=True)
    write_report(target, report)
    taken: list[dict[str, Any]] = []
    for case in tqdm(cases, desc="converting", unit="case", disable=not progress):
        if case.identifier in earlier and case_is_complete(target, case.identifier, case.split, len(channels)):
            kept = earlier[case.identifier]
            taken.append({**kept, "notes": [n for n in kept["notes"] if n != _KEPT] + [_KEPT]})
            continue
        try:
            written = convert_case(case, channels, converter, options, target, source)
        except CaseSkipped as reason:
            skipped.append(SkippedSource(case.source, str(reason), case.identifier))
            continue
        taken.append({"case": case.identifier, "split": case.split, "source": case.source, "files": written.files,
                      "lesion_voxels": written.lesion_voxels, "notes": written.notes})
        # Recorded after every case, so that --continue after an interruption knows what is done.
        _record(report, taken, skipped)
        write_report(target, report)

    _record(report, taken, skipped)
    training = sorted(e["case"] for e in taken if e["split"] == "Tr")
    test = sorted(e["case"] for e in taken if e["split"] == "Ts")
    if not training:
        write_report(target, report)
        raise LdiffError(f"{source}: no training case could be converted; the reasons are in {report_paths(target)[1]}.")
    save_json_atomic({
        "channel_names": {str(i): name for i, name in enumerate(channels)},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": len(training),
        "file_ending": FILE_ENDING,
        "name": target.name,
        "description": f"{converter.title}, converted by ldiff_convert; see {report_paths(target)[1].name}",
        "reference": converter.url,
        "licence": converter.licence,
        "converted_from": {"format": converter.format_name, "source": str(source)},
    }, target / "dataset.json")
    problems = verify_dataset(RawDataset(target))
    report["status"] = "fails verification" if problems else "complete"
    _, markdown = write_report(target, report)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise LdiffError(f"{target}: the converted dataset fails verification: {shown}.")
    return ConversionResult(target, training, test, len(skipped), markdown)
