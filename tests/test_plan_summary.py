"""The plan summaries the demo prints: a dataset's plans and the plan a trained model carries."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "ldiff" / "demo_models" / "t1_cond_fill"


def test_model_summary_states_the_models_own_plan():
    from ldiff.planning.summary import summarise_model

    description = json.loads((DEMO / "model.json").read_text())
    text = summarise_model(description)
    assert f"mask dilation {description['mask_dilation']['radius_voxels']} voxel(s)" in text
    assert description["dataset_name"] in text and "cond_fill 2d" in text
    assert str(description["network"]["channels"]) in text
    # the shipped model is trained on all three views, and the summary says what that means for prediction
    assert ("fills along all three views" in text) == (description["training"].get("slice_axes") == "all")
    result = subprocess.run([sys.executable, "-m", "ldiff.planning.summary", "-m", str(DEMO)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == text
