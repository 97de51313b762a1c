"""The PNG montage of one reader-study item: three planes through the lesion, every channel.

One row per channel, three columns (axial, coronal, sagittal), each plane through the crop's centre
voxel (the lesion's centre), shown in RAS+ orientation (anterior and superior up) with the voxel
aspect of the spacing. A tick on every panel's edges points at the centre, so the reader knows which
lesion to judge without an outline; ``outline`` draws the lesion's contour instead (a marked study).
Each channel gets its own grey window (0.5th to 99.5th percentile of the crop's non-background
voxels), so scans of different intensity scales look alike and the scale cannot tell the groups apart.
The title is the item's opaque id only.

Drawn with matplotlib's object API on an Agg canvas (no display, pyplot's state untouched); the
figure has a fixed size so every montage has the same pixels (:func:`montage_size_pixels`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ldiff.io import Geometry, atomic_path
from ldiff.preprocessing.orientation import Reorientation

PLANES = ("axial", "coronal", "sagittal")
PANEL_INCHES = 2.4
TITLE_INCHES = 0.4
DPI = 100
OUTLINE_COLOUR = "#ff3030"
TICK_COLOUR = "#ffd000"


def montage_size_pixels(num_channels: int) -> tuple[int, int]:
    """(width, height) in pixels of the montage of an item with ``num_channels`` channels."""
    return (int(round(PANEL_INCHES * len(PLANES) * DPI)),
            int(round((PANEL_INCHES * num_channels + TITLE_INCHES) * DPI)))


def _plane(volume: np.ndarray, plane: str, centre_zyx: Sequence[int]) -> np.ndarray:
    """The 2D cut of a canonical (z, y, x) volume; rows bottom-up (drawn with origin="lower")."""
    if plane == "axial":
        return volume[centre_zyx[0]]          # rows y (posterior -> anterior), columns x
    if plane == "coronal":
        return volume[:, centre_zyx[1], :]    # rows z (inferior -> superior), columns x
    return volume[:, :, centre_zyx[2]]        # rows z, columns y


def _plane_centre(plane: str, centre_zyx: Sequence[int]) -> tuple[int, int]:
    """(row, column) of the centre voxel in :func:`_plane`'s cut."""
    z, y, x = centre_zyx
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[plane]


def _aspect(plane: str, spacing_xyz: Sequence[float]) -> float:
    """Height / width of one pixel of the plane."""
    x, y, z = spacing_xyz
    return {"axial": y / x, "coronal": z / x, "sagittal": z / y}[plane]


def grey_window(volume: np.ndarray) -> tuple[float, float]:
    """(low, high): the 0.5th and 99.5th percentiles of the voxels above the volume's minimum (the zero
    padding and the background are left out), widened to 1 when they coincide."""
    above = volume > volume.min()
    values = volume[above] if np.any(above) else volume.ravel()
    low, high = (float(v) for v in np.percentile(values.astype(np.float64), [0.5, 99.5]))
    return (low, high) if high > low else (low, low + 1.0)


def canonical_centre(shape_zyx: Sequence[int], reorientation: Reorientation) -> tuple[int, int, int]:
    """Where the middle voxel of an odd-sized crop lands after reorientation to RAS+, (z, y, x)."""
    marker = np.zeros(shape_zyx, dtype=np.uint8)
    marker[tuple(size // 2 for size in shape_zyx)] = 1
    z, y, x = np.argwhere(reorientation.apply_to_array(marker))[0]
    return int(z), int(y), int(x)


def write_montage(path: str | Path, crops: Sequence[sitk.Image], title: str,
                  channel_names: Sequence[str] | None = None, outline: sitk.Image | None = None) -> Path:
    """Draw one item's montage and write it to ``path`` (PNG, atomically).

    Args:
        crops: the item's channels, one image each on one grid (any real pixel type), the lesion at the
            middle voxel.
        title: the figure's title (the item id; never anything that tells the group).
        channel_names: row labels (default ``channel 0``, ...).
        outline: the lesion's mask on the crops' grid (nonzero = lesion) to outline, or None.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    geometry = Geometry.of(crops[0])
    reorientation = Reorientation.from_direction(geometry.direction)
    spacing = reorientation.apply_to_geometry(geometry).spacing
    shape = sitk.GetArrayViewFromImage(crops[0]).shape
    centre = canonical_centre(shape, reorientation)
    mask = None
    if outline is not None:
        mask = reorientation.apply_to_array((sitk.GetArrayViewFromImage(outline) != 0).astype(np.uint8)) > 0
    names = list(channel_names) if channel_names else [f"channel {c}" for c in range(len(crops))]
    width, height = montage_size_pixels(len(crops))
    figure = Figure(figsize=(width / DPI, height / DPI))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(crops), len(PLANES), squeeze=False)
    for channel, crop in enumerate(crops):
        volume = reorientation.apply_to_array(sitk.GetArrayViewFromImage(crop).astype(np.float32))
        low, high = grey_window(volume)
        for column, plane in enumerate(PLANES):
            axis = axes[channel][column]
            axis.imshow(_plane(volume, plane, centre), cmap="gray", vmin=low, vmax=high, origin="lower",
                        aspect=_aspect(plane, spacing), interpolation="nearest")
            if mask is not None and _plane(mask, plane, centre).any():
                axis.contour(_plane(mask, plane, centre).astype(np.float32), levels=[0.5], colors=OUTLINE_COLOUR,
                             linewidths=0.8)
            # Ticks, not a cross-hair: they point at the lesion without hiding its edges.
            row, col = _plane_centre(plane, centre)
            axis.set_xticks([col])
            axis.set_yticks([row])
            axis.set_xticklabels([])
            axis.set_yticklabels([])
            axis.tick_params(direction="in", length=6, width=1.5, colors=TICK_COLOUR, top=True, right=True)
            if channel == 0:
                axis.set_title(plane, fontsize=9)
            if column == 0:
                axis.set_ylabel(names[channel] if channel < len(names) else f"channel {channel}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return path
