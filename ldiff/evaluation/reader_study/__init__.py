"""Blinded reader studies: can experts tell generated lesions (or filled regions) from real ones?

``ldiff_reader_study make`` builds a set of lesion crops from two groups of scans under opaque ids,
with one answer sheet per reader and a separate key; ``ldiff_reader_study score`` checks the filled-in
sheets against the set and reports detections, accuracy, sensitivity and specificity with exact
binomial intervals, and Cohen's kappa between readers.

* ``items.py``: a group's cases and lesions, and the crop around one lesion (world geometry kept);
* ``montage.py``: the PNG of one item (three planes through the lesion, every channel);
* ``make.py``: choosing the lesions, the ids, and writing the set;
* ``score.py``: reading and checking sheets, the statistics, the report.
Importing this package imports nothing heavy.
"""
