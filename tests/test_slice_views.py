"""Slice views: exact round trips and which axis each view slices along."""
from __future__ import annotations

import numpy as np
import pytest

from ldiff.slice_views import ALL_VIEWS, check_views, from_view, is_isotropic, to_view


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_every_view_round_trips_exactly_with_leading_channels(view):
    volume = np.random.default_rng(0).normal(size=(2, 5, 6, 7)).astype(np.float32)
    assert np.array_equal(from_view(to_view(volume, view), view), volume)


def test_views_slice_along_z_y_and_x():
    volume = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    assert np.array_equal(to_view(volume, "axial")[2], volume[2])            # (Y, X) at z = 2
    assert np.array_equal(to_view(volume, "coronal")[3], volume[:, 3, :])    # (Z, X) at y = 3
    assert np.array_equal(to_view(volume, "sagittal")[4], volume[:, :, 4].T)  # (Y, Z) at x = 4


def test_bad_views_and_isotropy():
    with pytest.raises(ValueError, match="repeat"):
        check_views(("axial", "axial"))
    with pytest.raises(ValueError, match="at least one"):
        check_views(())
    assert is_isotropic((1.0, 1.0, 1.2)) and not is_isotropic((1.0, 1.0, 3.0))


def test_views_parse_from_text_and_default_to_the_models_training():
    from ldiff.slice_views import default_views, parse_views

    assert parse_views("all") == ALL_VIEWS and parse_views("axial+sagittal") == ("axial", "sagittal")
    trained = {"training": {"slice_axes": "all"}, "target_spacing": [1.0, 1.0, 1.0]}
    assert default_views(trained) == ALL_VIEWS
    assert default_views({**trained, "target_spacing": [1.0, 1.0, 3.0]}) == ("axial",)
    assert default_views({"training": {"slice_axes": "axial"}}) == ("axial",)
