"""Scoring a reader study (``ldiff_reader_study score``): filled-in sheets against the set's key.

A positive is an item of the generated group B (e.g. synthetic); a reader's "yes" calls an item B.
Per reader and pooled over readers: TP (B called B), FN (B called A), TN (A called A), FP (A called
B); "B items detected" is TP of the B items; accuracy (TP + TN) / N, sensitivity TP / (TP + FN) and
specificity TN / (TN + FP), each with its exact (Clopper-Pearson) 95 % binomial confidence interval.
Agreement between two readers is Cohen's kappa, (p_o - p_e) / (1 - p_e), for every pair, and its mean.

A sheet is scored only when it answers exactly the set's items: no id missing, none extra, none twice,
every answer yes or no; otherwise one sentence names the sheet and the problem, and nothing is written.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ldiff.errors import LdiffError
from ldiff.io import atomic_path, load_json, save_json_atomic

YES = ("yes", "y", "1", "true")
NO = ("no", "n", "0", "false")
CONFIDENCE_RANGE = (1, 5)
LEVEL = 0.95


@dataclass(frozen=True)
class StudySet:
    """What scoring needs of a set: its item ids in order, group labels (A, B) and which items are B."""

    folder: Path
    item_ids: tuple[str, ...]
    labels: tuple[str, str]
    answer_column: str
    generated: dict[str, bool]


@dataclass(frozen=True)
class Sheet:
    """One reader's answers: item id -> True when the reader called it B; confidence 1-5 or None."""

    reader: str
    path: Path
    answers: dict[str, bool]
    confidence: dict[str, int | None]


def load_study_set(folder: Path) -> StudySet:
    """Read ``study.json`` and ``key.csv`` of a set and check that the key is the one the set was made with."""
    study_path, key_path = folder / "study.json", folder / "key.csv"
    if not study_path.is_file():
        raise LdiffError(f"{folder}: holds no study.json; give the folder that ldiff_reader_study make wrote.")
    try:
        study = load_json(study_path)
        labels = tuple(str(group["label"]) for group in study["groups"])
        item_ids, answer_column = tuple(study["item_ids"]), str(study["answer_column"])
    except (ValueError, KeyError, TypeError) as error:
        raise LdiffError(f"{study_path}: is not a reader-study description ({type(error).__name__}: "
                         f"{error}).") from None
    if not key_path.is_file():
        raise LdiffError(f"{key_path}: missing; scoring needs the set's key (keep it with study.json).")
    if hashlib.sha256(key_path.read_bytes()).hexdigest() != study.get("key_sha256"):
        raise LdiffError(f"{key_path}: is not the key this set was made with (its SHA-256 differs from study.json's).")
    with open(key_path, newline="", encoding="utf-8") as handle:
        generated = {row["item_id"]: row["generated"] == "1" for row in csv.DictReader(handle)}
    if set(generated) != set(item_ids):
        raise LdiffError(f"{key_path}: its item ids differ from those of {study_path}.")
    return StudySet(folder, item_ids, labels, answer_column, generated)  # type: ignore[arg-type]


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The sheet's header (lower case) and rows as {column: stripped text}; spreadsheet exports with ';' or tabs and a
    byte-order mark are read too. Rows with no text at all are skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LdiffError(f"{path}: is not UTF-8 text; save the sheet as CSV (UTF-8).") from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [row for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise LdiffError(f"{path}: is empty; it needs the header item_id,... and one row per item.")
    header = [cell.strip().lower() for cell in rows[0]]
    return header, [{column: (row[index].strip() if index < len(row) else "") for index, column in enumerate(header)}
                    for row in rows[1:]]


def read_sheet(path: Path, study_set: StudySet) -> Sheet:
    """Read and check one reader's sheet against the set; one sentence naming ``path`` on any mismatch."""
    if not path.is_file():
        raise LdiffError(f"{path}: file not found.")
    header, rows = _rows(path)
    column = study_set.answer_column.lower()
    for needed in ("item_id", column):
        if needed not in header:
            raise LdiffError(f"{path}: has no column {needed}; a sheet needs item_id,{study_set.answer_column}"
                             "[,confidence] as ldiff_reader_study make wrote it.")
    ids = [row["item_id"].lower() for row in rows]
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise LdiffError(f"{path}: item {item_id} appears {ids.count(item_id)} times; answer each item once.")
        seen.add(item_id)
    known = set(study_set.item_ids)
    extra = [item_id for item_id in ids if item_id not in known]
    if extra:
        raise LdiffError(f"{path}: {len(extra)} item id(s) are not in this set (e.g. {extra[0] or '(empty)'}); "
                         "is it a sheet of another set?")
    missing = [item_id for item_id in study_set.item_ids if item_id not in seen]
    if missing:
        raise LdiffError(f"{path}: {len(missing)} item(s) of the set are missing (e.g. {missing[0]}).")
    answers: dict[str, bool] = {}
    confidence: dict[str, int | None] = {}
    accepted_yes = YES + (study_set.labels[1].lower(),)
    accepted_no = NO + (study_set.labels[0].lower(),)
    for row in rows:
        item_id, answer = row["item_id"].lower(), row[column].lower()
        if not answer:
            raise LdiffError(f"{path}: item {item_id} has no answer in the column {study_set.answer_column}.")
        if answer not in accepted_yes + accepted_no:
            raise LdiffError(f"{path}: item {item_id} has the answer {row[column]!r}; write yes or no.")
        answers[item_id] = answer in accepted_yes
        confidence[item_id] = _confidence(path, item_id, row.get("confidence", ""))
    return Sheet(path.stem, path, answers, confidence)


def _confidence(path: Path, item_id: str, text: str) -> int | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low, high = CONFIDENCE_RANGE
    if not value.is_integer() or not low <= value <= high:
        raise LdiffError(f"{path}: item {item_id} has the confidence {text!r}; write a whole number from {low} to "
                         f"{high}, or leave it empty.")
    return int(value)


def clopper_pearson(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float] | None:
    """The exact two-sided binomial confidence interval of ``successes`` / ``trials`` (None when no trials):
    lower = Beta(a/2; k, n-k+1) quantile (0 when k = 0), upper = Beta(1-a/2; k+1, n-k) quantile (1 when
    k = n), with a = 1 - level."""
    from scipy.stats import beta

    if trials == 0:
        return None
    alpha = 1.0 - level
    lower = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    upper = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lower, upper


def cohen_kappa(first: Sequence[bool], second: Sequence[bool]) -> float | None:
    """Cohen's kappa of two readers' yes/no answers to the same items; None when it is undefined (both
    gave one and the same answer to every item, so chance agreement is already perfect)."""
    if len(first) != len(second) or not first:
        raise ValueError("kappa needs two equally long, non-empty answer lists")
    count = len(first)
    observed = sum(a == b for a, b in zip(first, second)) / count
    yes_first, yes_second = sum(first) / count, sum(second) / count
    expected = yes_first * yes_second + (1 - yes_first) * (1 - yes_second)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _rate(successes: int, trials: int) -> dict:
    return {"value": successes / trials if trials else None, "successes": successes, "trials": trials,
            "ci95": clopper_pearson(successes, trials)}


def confusion_scores(pairs: Sequence[tuple[bool, bool]]) -> dict:
    """Counts and rates of (truth is B, answer is B) pairs."""
    tp = sum(truth and answer for truth, answer in pairs)
    fn = sum(truth and not answer for truth, answer in pairs)
    tn = sum(not truth and not answer for truth, answer in pairs)
    fp = sum(not truth and answer for truth, answer in pairs)
    return {"tp": tp, "fn": fn, "tn": tn, "fp": fp, "detected": tp, "generated_items": tp + fn,
            "accuracy": _rate(tp + tn, len(pairs)), "sensitivity": _rate(tp, tp + fn),
            "specificity": _rate(tn, tn + fp)}


def interpretation(pooled: dict, labels: Sequence[str]) -> str:
    """One sentence on whether readers told the groups apart, from the pooled accuracy's interval."""
    accuracy = pooled["accuracy"]
    low, high = accuracy["ci95"]
    numbers = f"pooled accuracy {accuracy['value']:.2f}, 95 % CI {low:.2f} to {high:.2f}"
    if low > 0.5:
        return f"Readers told {labels[1]} from {labels[0]} items apart better than chance ({numbers}, above 0.5)."
    if high < 0.5:
        return (f"Readers did worse than chance: they took {labels[1]} items for {labels[0]} ones and the reverse "
                f"more often than not ({numbers}, below 0.5).")
    return (f"Readers could not tell {labels[1]} from {labels[0]} items apart better than chance ({numbers}, "
            "which includes 0.5).")


def score_sheets(study_set: StudySet, sheets: Sequence[Sheet]) -> dict:
    """The report: per reader, pooled, kappa per pair of readers and its mean, and every item's answers."""
    truth = [study_set.generated[item_id] for item_id in study_set.item_ids]
    readers = []
    for sheet in sheets:
        answers = [sheet.answers[item_id] for item_id in study_set.item_ids]
        scores = confusion_scores(list(zip(truth, answers)))
        given = [value for value in sheet.confidence.values() if value is not None]
        readers.append({"reader": sheet.reader, "sheet": str(sheet.path), **scores,
                        "mean_confidence": sum(given) / len(given) if given else None})
    pooled = confusion_scores([(t, sheet.answers[item_id]) for sheet in sheets
                               for item_id, t in zip(study_set.item_ids, truth)])
    kappas = []
    for first, second in itertools.combinations(sheets, 2):
        kappa = cohen_kappa([first.answers[i] for i in study_set.item_ids],
                            [second.answers[i] for i in study_set.item_ids])
        kappas.append({"readers": [first.reader, second.reader], "kappa": kappa})
    defined = [entry["kappa"] for entry in kappas if entry["kappa"] is not None]
    return {
        "set": str(study_set.folder), "num_items": len(truth),
        "groups": {"reference": study_set.labels[0], "generated": study_set.labels[1]},
        "generated_items": sum(truth), "reference_items": len(truth) - sum(truth),
        "confidence_level": LEVEL, "readers": readers, "pooled": pooled, "kappa": kappas,
        "mean_kappa": sum(defined) / len(defined) if defined else None,
        "interpretation": interpretation(pooled, study_set.labels),
        "items": [{"item_id": item_id, "group": study_set.labels[int(t)],
                   "answers": {sheet.reader: study_set.labels[int(sheet.answers[item_id])] for sheet in sheets}}
                  for item_id, t in zip(study_set.item_ids, truth)],
    }


def _rate_cell(rate: dict) -> str:
    if rate["value"] is None:
        return "-"
    low, high = rate["ci95"]
    return f"{rate['value']:.2f} ({low:.2f}-{high:.2f})"


def markdown(report: dict) -> str:
    """The report as markdown: one row per reader and the pooled row, then agreement and the verdict."""
    reference, generated = report["groups"]["reference"], report["groups"]["generated"]
    lines = [f"# Reader study: {generated} or {reference}?", "",
             f"Set `{report['set']}`: {report['num_items']} items, {report['generated_items']} {generated} and "
             f"{report['reference_items']} {reference}; a positive is a {generated} item called {generated}.", "",
             f"| reader | {generated} detected | TP | FN | TN | FP | accuracy (95 % CI) | sensitivity (95 % CI) | "
             "specificity (95 % CI) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in [(r["reader"], r) for r in report["readers"]] + [("pooled", report["pooled"])]:
        lines.append(f"| {name} | {row['detected']} of {row['generated_items']} | {row['tp']} | {row['fn']} | "
                     f"{row['tn']} | {row['fp']} | {_rate_cell(row['accuracy'])} | {_rate_cell(row['sensitivity'])} | "
                     f"{_rate_cell(row['specificity'])} |")
    lines += ["", "Intervals are exact (Clopper-Pearson). The pooled row counts every answer of every reader as one "
              "trial; answers to the same item are not independent, so its interval is narrower than it should be."]
    if report["kappa"]:
        pairs = ", ".join(f"{a} and {b} {'undefined' if k is None else f'{k:.2f}'}"
                          for (a, b), k in ((entry["readers"], entry["kappa"]) for entry in report["kappa"]))
        mean = "-" if report["mean_kappa"] is None else f"{report['mean_kappa']:.2f}"
        lines += ["", f"Agreement between readers (Cohen's kappa): {pairs}; mean {mean}."]
    lines += ["", report["interpretation"]]
    return "\n".join(lines) + "\n"


def score_reader_study(set_dir: Path, sheet_paths: Sequence[Path], output: Path | None = None) -> tuple[dict, str]:
    """Check every sheet, then write ``report.json`` and ``report.md`` to ``output`` (default
    ``set_dir/report``); returns (report, markdown)."""
    study_set = load_study_set(Path(set_dir))
    if not sheet_paths:
        raise LdiffError("give at least one filled-in sheet to score.")
    sheets: list[Sheet] = []
    for path in map(Path, sheet_paths):
        for other in sheets:
            if other.path.resolve() == path.resolve():
                raise LdiffError(f"{path}: is given twice; give each sheet once.")
            if other.reader.lower() == path.stem.lower():
                raise LdiffError(f"{path}: has the reader name {path.stem} of {other.path} too; the file name names "
                                 "the reader, so give each sheet its own name.")
        sheets.append(read_sheet(path, study_set))
    output = Path(output) if output is not None else Path(set_dir) / "report"
    targets = [output / "report.json", output / "report.md"]
    inputs = {p.resolve() for p in [*map(Path, sheet_paths), Path(set_dir) / "key.csv", Path(set_dir) / "study.json"]}
    for target in targets:
        if target.resolve() in inputs:
            raise LdiffError(f"{target}: would overwrite an input; choose another -o.")
    report = score_sheets(study_set, sheets)
    text = markdown(report)
    save_json_atomic(report, targets[0])
    with atomic_path(targets[1]) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return report, text
