"""Mean and spread over seeds of several ``ldiff_benchmark`` runs of one scan (transplanted lesions).

    python benchmarks/seed_summary.py -o documentation/results/real_patients_brain_mask/patient07_seeds.md \
        benchmark_results/brain_mask_fix2/patient07 benchmark_results/brain_mask_fix2/patient07_seed*

One transplanted draw of 20 lesions per patient decides little: which white matter the shapes land in
moves every filler by 1-3 dB, and ldiff against a classic filler by as much. Each folder is one run
(its benchmark.json, a different ``--seed``, the same methods); this writes, per method, the mean
thesis PSNR and SSIM over the runs with their standard deviation, the lead of each method over the
best classic filler of the same run (mean and minimum), and the runs' commands, as markdown and JSON.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from ldiff.evaluation.benchmark.report import provenance
from ldiff.io import atomic_path, save_json_atomic

METRICS = ("thesis_psnr_in", "thesis_ssim_in")


def run_scores(folder: Path) -> tuple[str, dict[str, dict[str, float]]]:
    """(command, {method: {metric: value}}) of one benchmark.json (one scan, so one row per method)."""
    record = json.loads((folder / "benchmark.json").read_text())
    return record["command"], {row["method"]: {m: float(row[m]) for m in METRICS} for row in record["summary"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="ldiff_benchmark output folders, one per seed")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the markdown file (JSON beside it)")
    arguments = parser.parse_args()
    runs = [run_scores(folder) for folder in arguments.folders]
    methods = [m for m in runs[0][1] if all(m in scores for _, scores in runs)]
    classic = [m for m in methods if not m.startswith("ldiff") and m != "input"]
    summary = []
    for method in methods:
        values = {m: np.array([scores[method][m] for _, scores in runs]) for m in METRICS}
        leads = np.array([scores[method]["thesis_psnr_in"] - max(scores[c]["thesis_psnr_in"] for c in classic
                                                                  if c != method) for _, scores in runs])
        summary.append({"method": method, **{f"{m}_mean": float(v.mean()) for m, v in values.items()},
                        **{f"{m}_std": float(v.std()) for m, v in values.items()},
                        "psnr_lead_over_best_other_classic_mean": float(leads.mean()),
                        "psnr_lead_over_best_other_classic_min": float(leads.min())})
    record = provenance(" ".join(["python", *map(shlex.quote, sys.argv)]), [])
    lines = [f"# Transplanted lesions over {len(runs)} seeds", "",
             *(f"- {key}: {value}" for key, value in record.items() if key != "models"), "",
             "Thesis protocol, in the region every method replaces; mean (standard deviation) over the runs; "
             "lead = PSNR minus the best classic filler's (other than the method itself) in the same run.", "",
             "| method | PSNR (dB) | SSIM | lead, mean | lead, worst run |", "|---|---|---|---|---|"]
    lines += [f"| {s['method']} | {s['thesis_psnr_in_mean']:.2f} ({s['thesis_psnr_in_std']:.2f}) | "
              f"{s['thesis_ssim_in_mean']:.3f} ({s['thesis_ssim_in_std']:.3f}) | "
              f"{s['psnr_lead_over_best_other_classic_mean']:+.2f} | {s['psnr_lead_over_best_other_classic_min']:+.2f} |"
              for s in summary if s["method"] != "input"]
    lines += ["", "Runs:", *(f"- `{command}`" for command, _ in runs)]
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(arguments.output) as path:
        path.write_text("\n".join(lines) + "\n")
    save_json_atomic({**record, "runs": [command for command, _ in runs], "summary": summary},
                     arguments.output.with_suffix(".json"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
