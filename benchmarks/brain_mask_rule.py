"""ldiff_benchmark with the prediction's brain mask derived by the rule before or after 2026-12-08.

    python benchmarks/brain_mask_rule.py old|new  LDIFF_BENCHMARK_ARGUMENTS...

Models trained on real scans before the brain-mask fix of 2026-12-08 (documentation/benchmark.md, "Brain
mask of resampled scans"; the shipped ``t1_cond_fill`` among them) saw those scans normalised over a brain
mask without the ventricles, which were set to background. ``old`` derives the brain mask of the
*prediction* (the model's input: normalisation, background, the first guess's white matter) with that rule
(``brain_before`` of benchmarks/brain_mask_coverage.py); the benchmark's own tissue split, transplanted cases
and scoring keep today's rule, so both runs score the same cases. ``new`` is plain ``ldiff_benchmark``. The
``Command:`` line of the report shows only the ``ldiff_benchmark`` arguments; the folder's README says which
rule each run used.
"""
from __future__ import annotations

import sys

import numpy as np

import ldiff.evaluation.benchmark.lesion_context  # noqa: F401 (imported before the patch: keeps today's rule)
import ldiff.evaluation.benchmark.runner as runner
import ldiff.preprocessing.brain_masks as brain_masks
from brain_mask_coverage import brain_before
from ldiff.cli.benchmark import main


def derive_brain_mask_before_the_fix(image: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    return brain_before(np.asarray(image, np.float64))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("old", "new"):
        sys.exit("usage: python benchmarks/brain_mask_rule.py old|new LDIFF_BENCHMARK_ARGUMENTS...")
    if sys.argv[1] == "old":
        today = brain_masks.derive_brain_mask
        brain_masks.derive_brain_mask = derive_brain_mask_before_the_fix  # what compute_masks calls
        assert runner.derive_brain_mask is today, "the benchmark's own split must keep today's rule"
    sys.argv = ["ldiff_benchmark", *sys.argv[2:]]
    main()
