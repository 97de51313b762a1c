"""A short human-readable summary of a dataset's fingerprint and plans (``python -m ldiff.planning.summary -d 001``)."""
from __future__ import annotations

import argparse

from ldiff import paths
from ldiff.io import load_json


def summarise(plans: dict, fingerprint: dict) -> str:
    """Plain-text table of the main planned values and the dataset facts behind them."""
    lesions = fingerprint["lesions"]
    volume = lesions.get("volume_mm3") or {}
    lines = [
        f"Dataset {plans['dataset_name']}: {fingerprint['num_cases']} training cases, channels {', '.join(plans['channel_names'])}",
        f"  lesions: {lesions['n_lesions']} in total; volume median {volume.get('p50', 0) or 0:.0f} mm3 "
        f"(5-95 %: {volume.get('p5', 0) or 0:.0f}-{volume.get('p95', 0) or 0:.0f}); boundary width "
        + (f"{lesions['boundary_width_mm']:.2f} mm" if lesions["boundary_width_mm"] is not None else "n/a"),
        f"  target spacing {plans['target_spacing']} mm, normalisation {plans['normalization']['scheme']} "
        f"({plans['normalization']['lower_percentile']}-{plans['normalization']['upper_percentile']} %) to [-1, 1]",
        f"  mask dilation {plans['mask_dilation']['radius_voxels']} voxel(s): {plans['mask_dilation']['reason']}",
    ]
    for name, config in plans["configurations"].items():
        network = config["network"]
        lines.append(
            f"  {name:>4}: slices {config['slice_size'][0]}x{config['slice_size'][1]}, stack depth {config['stack_depth']}, "
            f"UNet channels {network['channels']}, batch size {config['batch_size']} ({config['batch_size_method'].split(':')[0]}), "
            f"{config['num_training_steps']} steps"
        )
    if plans["overrides"]:
        lines.append("  overrides: " + ", ".join(f"{k}={v['value']}" for k, v in plans["overrides"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a summary of a dataset's plans.")
    parser.add_argument("-d", "--dataset", required=True)
    arguments = parser.parse_args()
    name = paths.find_dataset_name(arguments.dataset, [paths.preprocessed_root()])
    folder = paths.preprocessed_root() / name
    print(summarise(load_json(folder / "plans.json"), load_json(folder / "fingerprint.json")))


if __name__ == "__main__":
    main()
