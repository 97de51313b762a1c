"""fill_comparison.py with the plain (before 2026-12-08) warm-start first guess: the baseline of
documentation/benchmark.md's "A white-matter-only first guess". Same arguments as fill_comparison.py.

    python benchmarks/plain_prefill_comparison.py -d 2 --models ldiff/demo_models/t1_cond_fill --no-lpips -o OUT
"""
import runpy
import sys
from pathlib import Path

from ldiff.inference.predictor import Predictor

# Without a white-matter mask smooth_prefill continues everything around the mask, as it did before.
Predictor._white_matter = lambda self, image, brain, paint: None
script = Path(__file__).resolve().parent / "fill_comparison.py"
sys.argv = [str(script), *sys.argv[1:]]
runpy.run_path(str(script), run_name="__main__")
