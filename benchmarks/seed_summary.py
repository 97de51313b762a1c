"""Mean and spread over seeds of several ``ldiff_benchmark`` runs of one scan (transplanted lesions).

    python benchmarks/seed_summary.py -o documentation/results/real_patients_brain_mask/patient07_seeds.md \
        benchmark_results/brain_mask_fix2/patient07 benchmark_results/brain_mask_fix2/patient07_seed[0-9]

For runs made one by one (``ldiff_benchmark --repeats N`` does the same in one command and writes
``seeds.md``): each folder is one run (its benchmark.json, a different ``--seed``, the same methods); this
writes :func:`ldiff.evaluation.benchmark.seeds.summarise_runs` of them (per method, the mean thesis PSNR and
SSIM over the runs with their standard deviation, and the lead over the best other classic filler of the
same run, mean and worst) and the runs' commands, as markdown and JSON.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ldiff.evaluation.benchmark.report import provenance
from ldiff.evaluation.benchmark.seeds import seeds_table, summarise_runs
from ldiff.io import atomic_path, save_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="ldiff_benchmark output folders, one per seed")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the markdown file (JSON beside it)")
    arguments = parser.parse_args()
    runs = [json.loads((folder / "benchmark.json").read_text()) for folder in arguments.folders]
    summary = summarise_runs(runs)
    record = provenance(" ".join(["python", *map(shlex.quote, sys.argv)]), [])
    lines = [f"# Transplanted lesions over {len(runs)} seeds", "",
             *(f"- {key}: {value}" for key, value in record.items() if key != "models"), "",
             "Thesis protocol, in the region every method replaces; mean (standard deviation) over the runs; "
             "lead = PSNR minus the best classic filler's (other than the method itself) in the same run.", "",
             seeds_table(summary), "", "Runs:", *(f"- `{run['command']}`" for run in runs)]
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(arguments.output) as path:
        path.write_text("\n".join(lines) + "\n")
    save_json_atomic({**record, "runs": [run["command"] for run in runs], "summary": summary},
                     arguments.output.with_suffix(".json"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
