"""Several transplant draws of one benchmark: each method's mean and spread over seeds, and its lead.

One draw of ``--count`` transplanted shapes decides a great deal: which white matter the shapes land in
moves every filler by 1-3 dB, and ldiff against a classic filler by as much (two real patients, five
seeds each: documentation/benchmark.md). ``ldiff_benchmark --repeats N`` runs the benchmark with seeds
``--seed`` to ``--seed + N - 1`` (each run in ``seed_K/``) and writes ``seeds.md`` and ``seeds.json`` with
:func:`summarise_runs` of them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ldiff.evaluation.benchmark.runner import INPUT_ROW
from ldiff.io import atomic_path, save_json_atomic

METRICS = ("thesis_psnr_in", "thesis_ssim_in")


def _is_classic(method: str) -> bool:
    return not method.startswith("ldiff") and method != INPUT_ROW


def summarise_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, channel) in every run's ``summary`` (``run_benchmark`` results or their benchmark.json):
    mean and standard deviation over the runs of :data:`METRICS`, and the thesis PSNR lead over the best
    classic filler other than the method itself in the same run (mean and worst run; NaN without one)."""
    scores = [{(row["method"], row["channel"]): row for row in run["summary"]} for run in runs]
    keys = [key for key in scores[0] if all(key in run for run in scores)]
    summary = []
    for method, channel in keys:
        values = {metric: np.array([run[(method, channel)][metric] for run in scores], dtype=np.float64)
                  for metric in METRICS}
        leads = []
        for run in scores:
            others = [row["thesis_psnr_in"] for (other, other_channel), row in run.items()
                      if other_channel == channel and other != method and _is_classic(other)]
            leads.append(run[(method, channel)]["thesis_psnr_in"] - max(others) if others else math.nan)
        summary.append({"method": method, "channel": channel, "runs": len(runs),
                        **{f"{metric}_mean": float(v.mean()) for metric, v in values.items()},
                        **{f"{metric}_std": float(v.std()) for metric, v in values.items()},
                        "psnr_lead_over_best_other_classic_mean": float(np.mean(leads)),
                        "psnr_lead_over_best_other_classic_worst": float(np.min(leads))})
    return summary


def seeds_table(summary: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`summarise_runs` (the unfilled input left out)."""
    lines = ["| method | channel | thesis PSNR (dB) | thesis SSIM | lead, mean | lead, worst run |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {s['method']} | {s['channel']} | {s['thesis_psnr_in_mean']:.2f} ({s['thesis_psnr_in_std']:.2f}) | "
              f"{s['thesis_ssim_in_mean']:.3f} ({s['thesis_ssim_in_std']:.3f}) | "
              f"{s['psnr_lead_over_best_other_classic_mean']:+.2f} | {s['psnr_lead_over_best_other_classic_worst']:+.2f} |"
              for s in summary if s["method"] != INPUT_ROW]
    return "\n".join(lines)


def write_seed_summary(runs: Sequence[dict[str, Any]], seeds: Sequence[int], output: Path,
                       provenance: dict[str, Any]) -> list[Path]:
    """``seeds.md`` and ``seeds.json`` in ``output`` (atomically): :func:`summarise_runs` of ``runs``."""
    summary = summarise_runs(runs)
    lines = [f"# Transplanted lesions over {len(runs)} seeds ({', '.join(map(str, seeds))})", "",
             f"Command: `{provenance.get('command', '')}`  ",
             f"Commit {provenance.get('commit')}, {provenance.get('hardware')}, {provenance.get('date')}.", "",
             "Thesis protocol inside the region every method replaces; mean (standard deviation) over the seeds, "
             "each seed's run in `seed_K/`; lead = the method's PSNR minus the best classic filler's (other than "
             "itself) in the same run. One draw of shapes moves every filler by dB: compare the means.", "",
             seeds_table(summary)]
    output.mkdir(parents=True, exist_ok=True)
    written = [output / "seeds.md", output / "seeds.json"]
    with atomic_path(written[0]) as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    save_json_atomic({"provenance": provenance, "seeds": list(seeds), "summary": summary}, written[1])
    return written
