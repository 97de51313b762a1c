"""``ldiff_synthesize_dataset``: nnU-Net raw datasets of healthy scans with lesions painted by a trained
synthesis model. A stage after prediction (it runs a model), so it lives apart from ``ldiff.dataset``,
which the model-free stages use."""
