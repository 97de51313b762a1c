"""Cost of one network call per sample against the batch size, for choosing ``--batch-size``.

    OMP_NUM_THREADS=1 python benchmarks/network_batch_cost.py --model ldiff/demo_models/t1_cond_fill

Times the forward pass of a model's network (no gradients, the sampling case) on random input of
its training patch size, for several batch sizes, and prints milliseconds per sample.
"""
from __future__ import annotations

import argparse
import time

import torch

from ldiff.inference.model_loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder (model.json + checkpoint)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args()

    model = load_model(arguments.model, device=torch.device(arguments.device))
    in_channels = int(model.description["network"]["in_channels"])
    height, width = model.patch_size
    depth = (model.stack_depth,) if model.is_pseudo3d else ()
    print(f"{arguments.model}: {in_channels} input channels, patch {height}x{width}, {torch.get_num_threads()} thread(s)")
    print("batch  ms/sample")
    for batch in arguments.batch_sizes:
        inputs = torch.randn(batch, in_channels, *depth, height, width, device=model.device)
        timesteps = torch.full((batch,), 500, device=model.device)
        with torch.no_grad():
            model.network(inputs, timesteps)  # warm-up
            start = time.perf_counter()
            for _ in range(arguments.repeats):
                model.network(inputs, timesteps)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
        print(f"{batch:5d}  {1000 * (time.perf_counter() - start) / arguments.repeats / batch:9.1f}")


if __name__ == "__main__":
    main()
