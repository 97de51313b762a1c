"""A short human-readable summary of a dataset's fingerprint and plans (``python -m ldiff.planning.summary -d 001``),
or of the plan a trained model carries (``-m MODEL_FOLDER``)."""
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


def summarise_model(description: dict) -> str:
    """Plain-text summary of the plan a trained model carries in its model.json (what prediction uses)."""
    network = description["network"]
    training = description.get("training", {})
    window = description.get("patch_size") or description.get("slice_size")
    lines = [
        f"Model: {description['task']} {description.get('config_name', '?')}, channels "
        f"{', '.join(description['channel_names'])}, trained on {description.get('dataset_name', '?')}",
        f"  target spacing {description['target_spacing']} mm, normalisation {description['normalization']['scheme']} to [-1, 1]",
        f"  mask dilation {description['mask_dilation']['radius_voxels']} voxel(s)",
        f"  UNet channels {network['channels']}, {window[0]}x{window[1]} training patches, stack depth "
        f"{description.get('stack_depth', 1)}, {description['diffusion']['prediction_type']}",
    ]
    if training:
        lines.append(f"  {training.get('num_training_steps', '?')} training steps of batch {training.get('batch_size', '?')}"
                     + (f", fine-tuned from {training['pretrained_weights']}" if training.get("pretrained_weights") else ""))
        if training.get("slice_axes") == "all":
            lines.append("  trained on axial, coronal and sagittal slices: prediction fills along all three views and "
                         "averages them")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print a summary of a dataset's plans or of a trained model's plan.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-d", "--dataset")
    source.add_argument("-m", "--model", help="a trained model folder (model.json), e.g. ldiff/demo_models/t1_cond_fill")
    arguments = parser.parse_args()
    if arguments.model is not None:
        from pathlib import Path

        print(summarise_model(load_json(Path(arguments.model) / "model.json")))
        return
    name = paths.find_dataset_name(arguments.dataset, [paths.preprocessed_root()])
    folder = paths.preprocessed_root() / name
    print(summarise(load_json(folder / "plans.json"), load_json(folder / "fingerprint.json")))


if __name__ == "__main__":
    main()
