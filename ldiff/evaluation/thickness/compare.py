"""From per-scan region thicknesses to the study's numbers: change against the unfilled scans, bias
against the lesion-free truth, and the share of the lesions' bias a filler removes.

Input everywhere: ``tables[method][case][region] = mean thickness in mm`` (``nan`` where a region has
no cortex). Pure numpy, so every number here is tested without a thickness tool.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

RegionTables = Mapping[str, Mapping[str, Mapping[str, float]]]


def thesis_change_percent(x: float, y: float) -> float:
    """The reference thesis's change measure, ``100 |x - y| / (x + y)``: half the usual percent
    difference, symmetric in ``x`` and ``y``, 0 for identical values."""
    total = x + y
    return float("nan") if not total else 100.0 * abs(x - y) / total


def percent_difference(x: float, reference: float) -> float:
    """Signed ``100 (x - reference) / reference``."""
    return float("nan") if not reference else 100.0 * (x - reference) / reference


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def compare_methods(tables: RegionTables, reference: str, truth: str | None = None) -> list[dict]:
    """One row per method (other than the truth) and region, averaged over the cases every method has:

    * ``thickness_mm``: mean thickness;
    * ``thesis_change_pct`` / ``abs_percent_difference_pct``: mean over cases of the change against the
      ``reference`` (unfilled) scan of the same case, the thesis's measure and ``|100 (x - y) / y|``;
    * ``percent_difference_pct``: the signed percent difference (direction of the change);
    * with ``truth``: ``bias_mm`` (mean over cases of filled minus truth), ``abs_bias_mm`` and
      ``bias_removed`` = ``1 - sum |bias filled| / sum |bias unfilled|`` over cases (1: every bit of the
      lesions' bias removed, 0: none, negative: the filler added bias). Summing over cases before
      dividing keeps a case whose lesions hardly biased a region from dominating the ratio.
    """
    methods = [m for m in tables if m != truth]
    if reference not in tables:
        raise KeyError(f"reference {reference!r} is not among the methods {sorted(tables)}")
    cases = sorted(set.intersection(*(set(tables[m]) for m in tables)))
    regions = list(next(iter(tables[reference].values())).keys()) if cases else []
    rows = []
    for method in methods:
        for region in regions:
            values = [tables[method][c][region] for c in cases]
            unfilled = [tables[reference][c][region] for c in cases]
            row = {"method": method, "region": region, "cases": len(cases), "thickness_mm": _mean(values),
                   "thesis_change_pct": _mean([thesis_change_percent(v, u) for v, u in zip(values, unfilled)]),
                   "percent_difference_pct": _mean([percent_difference(v, u) for v, u in zip(values, unfilled)]),
                   "abs_percent_difference_pct": _mean([abs(percent_difference(v, u)) for v, u in zip(values, unfilled)])}
            if truth is not None:
                true = [tables[truth][c][region] for c in cases]
                bias = [v - t for v, t in zip(values, true)]
                unfilled_bias = [u - t for u, t in zip(unfilled, true)]
                row["bias_mm"] = _mean(bias)
                row["abs_bias_mm"] = _mean([abs(b) for b in bias])
                denominator = sum(abs(b) for b in unfilled_bias if math.isfinite(b))
                numerator = sum(abs(b) for b in bias if math.isfinite(b))
                row["bias_removed"] = 1.0 - numerator / denominator if denominator > 0 else float("nan")
            rows.append(row)
    return rows
