"""A preview PNG of one predicted case: input, mask outline and output through the largest lesion.

One block of three rows (axial, coronal, sagittal) per channel and four columns (input, input with
the mask's outline, output, and the output zoomed to 48 mm around the lesion with the outline: lesions
are 5-10 voxels wide, too small to judge in a whole-slice panel). The views are cut through the voxel of the largest mask component that
lies closest to its centre of mass, shown in RAS+ orientation (anterior and superior up) with the
voxel aspect of the spacing, and input and output share one grey window (the 0.5th to 99.5th
percentiles of the input's non-background voxels), so any change of intensity is visible.

Drawn with matplotlib's object API on an Agg canvas, so it works without a display and leaves
pyplot's global state alone; the file is written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ldiff.io import Geometry, atomic_path
from ldiff.masks import label_components
from ldiff.preprocessing import Reorientation

VIEWS = ("axial", "coronal", "sagittal")
COLUMNS = ("input", "mask outline", "output", "output, zoomed")
ZOOM_MM = 48.0
PANEL_INCHES = 2.6
MASK_COLOUR = "#ff3030"


def largest_lesion_centre(mask: np.ndarray) -> tuple[int, int, int]:
    """(z, y, x) of the largest component's voxel nearest its centre of mass; the volume's centre if empty."""
    labels, count = label_components(mask)
    if count == 0:
        return tuple(int(s) // 2 for s in mask.shape)  # type: ignore[return-value]
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    voxels = np.argwhere(labels == int(np.argmax(sizes)))
    nearest = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    return int(nearest[0]), int(nearest[1]), int(nearest[2])


def _view(volume: np.ndarray, view: str, centre: Sequence[int]) -> np.ndarray:
    """The 2D cut of a canonical (z, y, x) volume, rows bottom-up (drawn with origin="lower")."""
    if view == "axial":
        return volume[centre[0]]          # rows y (posterior -> anterior), columns x
    if view == "coronal":
        return volume[:, centre[1], :]    # rows z (inferior -> superior), columns x
    return volume[:, :, centre[2]]        # rows z, columns y


def _zoom_box(view: str, centre: Sequence[int], shape: Sequence[int], spacing_xyz: Sequence[float]
              ) -> tuple[slice, slice]:
    """(rows, columns) of the view's ZOOM_MM window around the lesion centre, inside the volume."""
    x, y, z = spacing_xyz
    axes = {"axial": ((1, y), (2, x)), "coronal": ((0, z), (2, x)), "sagittal": ((0, z), (1, y))}[view]
    box = []
    for axis, step in axes:
        half = max(int(round(ZOOM_MM / 2 / step)), 4)
        start = min(max(int(centre[axis]) - half, 0), max(int(shape[axis]) - 2 * half, 0))
        box.append(slice(start, start + 2 * half))
    return box[0], box[1]


def _aspect(view: str, spacing_xyz: Sequence[float]) -> float:
    """Height / width of one pixel of the view."""
    x, y, z = spacing_xyz
    return {"axial": y / x, "coronal": z / x, "sagittal": z / y}[view]


def _window(volume: np.ndarray) -> tuple[float, float]:
    values = volume[volume > volume.min()] if np.any(volume > volume.min()) else volume.ravel()
    low, high = (float(v) for v in np.percentile(values.astype(np.float64), [0.5, 99.5]))
    return (low, high) if high > low else (low, low + 1.0)


def write_preview(path: str | Path, inputs: Sequence[np.ndarray], mask: np.ndarray, outputs: Sequence[np.ndarray],
                  geometry: Geometry, channel_names: Sequence[str] | None = None, title: str = "") -> Path:
    """Draw the preview of one case and write it to ``path`` (PNG).

    Args:
        inputs, outputs: per channel (Z, Y, X) arrays on the original grid (any real dtype).
        mask: (Z, Y, X) bool, the mask as given (its outline is drawn).
        geometry: the images' grid (for the orientation and the voxel aspect).
        channel_names: row labels (default ``channel 0``, ...).
        title: the figure's title (e.g. the case and the model).

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    reorientation = Reorientation.from_direction(geometry.direction)
    spacing = reorientation.apply_to_geometry(geometry).spacing
    canonical_mask = reorientation.apply_to_array(np.asarray(mask, dtype=np.uint8)) > 0
    centre = largest_lesion_centre(canonical_mask)
    names = list(channel_names or [f"channel {c}" for c in range(len(inputs))])
    rows = len(inputs) * len(VIEWS)
    figure = Figure(figsize=(PANEL_INCHES * len(COLUMNS), PANEL_INCHES * rows + 0.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, len(COLUMNS), squeeze=False)
    for channel, (before, after) in enumerate(zip(inputs, outputs)):
        before = reorientation.apply_to_array(np.asarray(before, dtype=np.float32))
        after = reorientation.apply_to_array(np.asarray(after, dtype=np.float32))
        low, high = _window(before)
        for view_index, view in enumerate(VIEWS):
            row = channel * len(VIEWS) + view_index
            aspect = _aspect(view, spacing)
            rows_box, columns_box = _zoom_box(view, centre, canonical_mask.shape, spacing)
            for column, (volume, outline, zoom) in enumerate(((before, False, False), (before, True, False),
                                                              (after, False, False), (after, True, True))):
                axis = axes[row][column]
                box = (rows_box, columns_box) if zoom else (slice(None), slice(None))
                axis.imshow(_view(volume, view, centre)[box].astype(np.float32), cmap="gray", vmin=low, vmax=high,
                            origin="lower", aspect=aspect, interpolation="nearest")
                cut = _view(canonical_mask, view, centre)[box]
                if outline and cut.any():
                    axis.contour(cut.astype(np.float32), levels=[0.5], colors=MASK_COLOUR, linewidths=0.8)
                axis.set_xticks([])
                axis.set_yticks([])
                if row == 0:
                    axis.set_title(COLUMNS[column], fontsize=9)
                if column == 0:
                    axis.set_ylabel(f"{names[channel] if channel < len(names) else channel}\n{view}", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path
