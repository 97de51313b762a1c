"""Cortical thickness of unfilled, filled and lesion-free scans (``ldiff_evaluate_thickness``).

* ``tools.py``: the thickness tools behind one interface (ANTs DiReCT via antspyx, an optional extra);
* ``regions.py``: lobe-sized sectors of MNI152 space, carried to each scan;
* ``study.py``: every scan through the tool, region means, cached under the output folder;
* ``compare.py``: change against the unfilled scans, bias against the truth, share of bias removed;
* ``report.py``: JSON, CSV, markdown, the per-region plot and the brain map;
* ``run.py``: ``evaluate_thickness``, the function behind the command.
Importing this package imports neither antspyx nor torch.
"""
