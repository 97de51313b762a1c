"""ldiff_benchmark: how well each filler does on your own scans, with the truth known.

    ldiff_benchmark -i T1.nii.gz FLAIR.nii.gz --mask lesions.nii.gz -o bench
    ldiff_benchmark -i imagesTr --masks labelsTr --channel-names T1w FLAIR -o bench
    ldiff_benchmark -d 001 --split Ts -o bench --methods ldiff biharmonic ringmedian

See :mod:`ldiff.evaluation.benchmark.runner` for what is measured.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from ldiff.errors import run_command

# Kept here rather than imported so that --help and input errors do not wait for torch.
CLASSIC_CHOICES = ("nawm", "rim", "patch", "biharmonic", "ringmedian", "slf")
DEFAULT_METHODS = ("ldiff",) + CLASSIC_CHOICES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldiff_benchmark",
        description="Benchmark lesion fillers on your own scans: each scan's own lesion shapes are moved into its "
        "normal-appearing white matter and painted with its own lesion appearance, so the truth under them is the "
        "real tissue; every method fills them and is scored inside the mask (thesis and BraTS protocols, LPIPS). "
        "The real lesions are filled too and scored by their residual contrast against the surrounding white matter.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--input", nargs="+", metavar="IN",
                        help="the channels of one scan (with --mask), or a folder of {case}_XXXX.nii.gz images")
    source.add_argument("-d", "--dataset", help="a raw dataset (id or name) in $ldiff_raw")
    parser.add_argument("--mask", help="the lesion mask of the single scan")
    parser.add_argument("--masks", metavar="DIR", help="folder of {case}.nii.gz lesion masks (default: the input folder)")
    parser.add_argument("--split", default="Tr", choices=("Tr", "Ts"), help="-d: images/labels Tr or Ts (default Tr)")
    parser.add_argument("--channel-names", nargs="+", metavar="NAME",
                        help="names of the channels, e.g. T1w FLAIR (default: dataset.json's, or 0000, 0001 ...); "
                             "ldiff models pick their channels by these names")
    parser.add_argument("-o", "--output", required=True, help="folder for benchmark.md/.csv/.json/.png and previews")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                        help="ldiff, ldiff:MODEL_FOLDER, either with @key=value,... sampling settings (e.g. "
                             "ldiff@sampler=dpm_solver,steps=10,num_samples=4), or a classic filler: "
                             f"{', '.join(CLASSIC_CHOICES)} (default: ldiff and every classic filler)")
    parser.add_argument("--shapes-from", metavar="PATH",
                        help="move the lesion shapes of this mask file or folder of masks instead of each scan's own")
    parser.add_argument("--count", type=int, default=20, help="lesions transplanted per scan (default 20)")
    parser.add_argument("--dilate", type=int,
                        help="voxels every method replaces around the mask (default: the ldiff model's planned dilation)")
    parser.add_argument("--t1-channel", type=int, help="channel whose three-class split gives the white matter "
                        "(default: the first named T1..., else 0)")
    parser.add_argument("--no-real-lesions", action="store_true", help="skip filling the scans' real lesions")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (faster)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same result")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="N transplant draws with seeds --seed ... --seed+N-1, each run in OUTPUT/seed_K/, and "
                             "seeds.md/.json with each method's mean and spread over them (default 1: one run in "
                             "OUTPUT); the real lesions are filled in the first run only. One draw of shapes moves "
                             "every filler by dB: use a few to choose a filler")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    return parser


def main() -> None:
    arguments = build_parser().parse_args()

    def work() -> None:
        from pathlib import Path

        from ldiff.errors import LdiffError
        from ldiff.evaluation.benchmark import cases as case_files
        from ldiff.evaluation.benchmark.methods import parse_method
        from ldiff.evaluation.benchmark.runner import BenchmarkSettings, run_benchmark
        from ldiff.evaluation.benchmark.transplant import TransplantSettings

        if arguments.count < 1:
            raise LdiffError(f"--count must be at least 1, got {arguments.count}.")
        if arguments.repeats < 1:
            raise LdiffError(f"--repeats must be at least 1, got {arguments.repeats}.")
        if arguments.dilate is not None and arguments.dilate < 0:
            raise LdiffError(f"--dilate must be 0 or more voxels, got {arguments.dilate}.")
        specs = [parse_method(text) for text in arguments.methods]
        names = arguments.channel_names
        if arguments.dataset is not None:
            cases, dataset_names = case_files.dataset_cases(arguments.dataset, arguments.split)
            names = names or dataset_names
        elif len(arguments.input) == 1 and Path(arguments.input[0]).is_dir():
            if arguments.mask:
                raise LdiffError(f"{arguments.input[0]}: is a folder of cases, so give --masks DIR, not --mask.")
            cases = case_files.folder_cases(arguments.input[0], arguments.masks)
        else:
            if not arguments.mask:
                raise LdiffError("a single scan needs its lesion mask: give --mask FILE.")
            cases = [case_files.single_case(arguments.input, arguments.mask)]
        shapes = case_files.load_shapes_source(arguments.shapes_from) if arguments.shapes_from else None
        output = Path(arguments.output)
        inputs = {Path(p).resolve() for case in cases for p in (*case.image_files, case.mask_file)}
        if output.resolve() in inputs:
            raise LdiffError(f"{output}: is one of the inputs; choose another output folder.")
        if output.exists() and not output.is_dir():
            raise LdiffError(f"{output}: exists and is not a folder.")
        command = "ldiff_benchmark " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        seeds = [arguments.seed + repeat for repeat in range(arguments.repeats)]
        results = []
        for seed in seeds:
            settings = BenchmarkSettings(seed=seed, dilate=arguments.dilate, lpips=not arguments.no_lpips,
                                         real_lesions=not arguments.no_real_lesions and seed == seeds[0],
                                         t1_channel=arguments.t1_channel, device=arguments.device,
                                         transplant=TransplantSettings(count=arguments.count))
            run_output = output if len(seeds) == 1 else output / f"seed_{seed}"
            results.append(run_benchmark(cases, names, specs, run_output, settings, shapes, command=command))
        from ldiff.evaluation.benchmark.report import SUMMARY_COLUMNS, markdown_table, provenance
        from ldiff.evaluation.benchmark.seeds import seeds_table, summarise_runs, write_seed_summary

        if len(seeds) == 1:
            print(markdown_table(results[0]["summary"], SUMMARY_COLUMNS))
            print(f"Report, plot and previews: {output}")
            return
        write_seed_summary(results, seeds, output, results[0].get("provenance") or provenance(command))
        print(seeds_table(summarise_runs(results)))
        print(f"Mean over {len(seeds)} seeds: {output / 'seeds.md'}; each run in {output}/seed_K/")

    run_command(work)


if __name__ == "__main__":
    main()
