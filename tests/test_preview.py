"""Prediction previews: the zoomed panel frames the largest lesion, inside the volume."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ldiff.inference.preview import ZOOM_MM, _zoom_box, largest_lesion_centre, write_preview
from ldiff.io import Geometry


def test_zoom_box_holds_the_lesion_centre_and_spans_the_zoom_in_mm():
    shape, spacing_xyz = (60, 80, 70), (1.0, 0.5, 2.0)
    for centre in ((30, 40, 35), (1, 2, 68)):  # mid-volume, and next to the volume's edges
        for view, axes in (("axial", ((1, 0.5), (2, 1.0))), ("coronal", ((0, 2.0), (2, 1.0))),
                           ("sagittal", ((0, 2.0), (1, 0.5)))):
            for box, (axis, step) in zip(_zoom_box(view, centre, shape, spacing_xyz), axes):
                assert 0 <= box.start <= centre[axis] < box.stop <= max(shape[axis], box.stop)
                assert abs((box.stop - box.start) * step - ZOOM_MM) <= 2 * step


def test_preview_is_a_png_centred_on_the_largest_lesion(tmp_path):
    volume = np.random.default_rng(0).normal(100, 5, (30, 40, 36)).astype(np.float32)
    mask = np.zeros(volume.shape, bool)
    mask[5:7, 5:7, 5:7] = True
    mask[15:19, 20:25, 18:22] = True  # the larger one
    assert largest_lesion_centre(mask) in {(z, y, x) for z, y, x in np.argwhere(mask[15:19, 20:25, 18:22]) + (15, 20, 18)}
    image = sitk.GetImageFromArray(volume)
    path = write_preview(tmp_path / "p.png", [volume], mask, [volume], Geometry.of(image), ["T1w"], "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
