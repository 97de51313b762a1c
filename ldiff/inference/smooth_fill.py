"""A smooth first guess inside a mask: biharmonic inpainting, lesion by lesion on a crop around each.

The warm start of conditional filling (:class:`ldiff.tasks.sampling.ConditionalFillTask`) noises this
guess to a small timestep and lets the model denoise it, instead of starting from pure noise: the
guess already carries the scan's own local intensity, which a model trained on other anatomy may
not reproduce from noise (documentation/benchmark.md). The classic ``biharmonic`` filler is the same
solve (:func:`ldiff.evaluation.classic.biharmonic.fill_biharmonic`).

The solve minimises the squared discrete Laplacian over the masked voxels with the known voxels fixed:
the discrete biharmonic equation of scikit-image's ``inpaint_biharmonic`` (a test checks that the two
agree to round-off away from the volume's edge; at the edge the Laplacian uses the neighbours that exist,
a natural boundary) and clip to the range of the known voxels in the crop. Its stencil reaches 2 voxels, so solving on a crop with a margin of at least 2 gives
the whole-volume solution at a tiny fraction of the cost. The system is symmetric positive definite: small
ones are solved directly, large ones by conjugate gradients. scikit-image's sparse LU took 52 s for the
198,000 unknown voxels around patient19's confluent lesions, conjugate gradients 3.7 s, to within 2e-7 of
the same solution (values in [-1, 1]; documentation/results/biharmonic_solve/). Voxels are treated as
isotropic; every masked voxel inside a crop is unknown, so no lesion serves as another's boundary.

Given a white-matter mask, the guess continues white matter only: tissue within
:data:`WM_CONTEXT_REACH_MM` of the mask that is not white matter is left out of the boundary. MS lesions
are white-matter lesions, but beside a real one lie the ventricles, dirty-appearing white matter and
the lesion's own signal reaching beyond its drawn, dilated mask; a continuation of those paints the
lesion dark again (on two real patients the biharmonic fill stayed 9-16 % darker than the white matter
around it; documentation/benchmark.md, "Brain mask of resampled scans").
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import cg, spsolve

from ldiff.masks import dilate_mask

# How far beside the mask non-white-matter tissue is left out of the boundary (mm): the planned 2 mm
# dilation plus a voxel, where a real lesion's partial-volume rim and the ventricle wall still reach.
WM_CONTEXT_REACH_MM = 3.0
# The biharmonic stencil (the Laplacian of the Laplacian) reaches this far.
STENCIL_RADIUS = 2
_FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)
# Above this many unknown voxels conjugate gradients beat the sparse LU's fill-in; below it the direct
# solve is exact and takes milliseconds.
DIRECT_SOLVE_MAX_UNKNOWNS = 5000
# Conjugate gradients stop at this residual relative to the right-hand side: on patient19's largest system
# (198,000 unknowns) the solution is then within 2e-7 of the direct one (values in [-1, 1]).
CG_RELATIVE_TOLERANCE = 1e-9


def biharmonic_inpaint(volume: np.ndarray, mask: np.ndarray, margin: int = 3) -> np.ndarray:
    """``volume`` with every voxel of ``mask`` replaced by the biharmonic continuation of its surroundings.

    Args:
        volume: (Z, Y, X) finite intensities, any scale.
        mask: (Z, Y, X) bool, the voxels to replace.
        margin: voxels added around each 26-connected component's bounding box (>= 2, the stencil's reach).

    Returns:
        float64 (Z, Y, X), equal to ``volume`` outside ``mask``. A component whose crop holds no known
        voxel (nothing to continue from) keeps its input values.
    """
    if margin < STENCIL_RADIUS:
        raise ValueError(f"margin must be at least {STENCIL_RADIUS} voxels, got {margin}")
    mask = np.asarray(mask, bool)
    if mask.shape != volume.shape or volume.ndim != 3:
        raise ValueError(f"volume {volume.shape} and mask {mask.shape} must be one (Z, Y, X) shape")
    result = np.asarray(volume, np.float64).copy()
    for crop, inside in _component_crops(mask, margin):
        unknown = mask[crop]
        if unknown.all():
            continue
        filled = solve_biharmonic(np.asarray(volume[crop], np.float64), unknown)
        result[crop][inside] = filled[inside]
    return result


def solve_biharmonic(values: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """``values`` (3D float64) with the ``unknown`` voxels set to minimise the sum of the squared discrete
    Laplacian (6 neighbours; at the array's edge only those that exist) over every voxel whose stencil
    touches an unknown one, then clipped to the range of the fixed voxels (as scikit-image does: a continuation
    brighter or darker than everything around it overshoots); the other voxels are fixed. Returns a new
    C-ordered array. ``unknown`` must leave at least one voxel known."""
    values = np.ascontiguousarray(values, np.float64)
    shape = values.shape
    unknown_flat = np.flatnonzero(unknown)
    column = np.full(values.size, -1, np.int64)
    column[unknown_flat] = np.arange(unknown_flat.size)
    # The Laplacian is evaluated at the unknown voxels and their neighbours: the other rows hold no unknown.
    points = np.flatnonzero(ndimage.binary_dilation(unknown, ndimage.generate_binary_structure(values.ndim, 1)))
    coordinates = np.unravel_index(points, shape)
    strides = [stride // values.itemsize for stride in values.strides]
    flat = values.ravel()
    known_part = np.zeros(points.size)  # each row's Laplacian from the fixed voxels
    degree = np.zeros(points.size)
    rows, columns, entries = [], [], []

    def add(row_index: np.ndarray, voxel: np.ndarray, weight: np.ndarray) -> None:
        voxel_column = column[voxel]
        fixed = voxel_column < 0
        np.add.at(known_part, row_index[fixed], weight[fixed] * flat[voxel[fixed]])
        rows.append(row_index[~fixed])
        columns.append(voxel_column[~fixed])
        entries.append(weight[~fixed])

    for axis, size in enumerate(shape):
        for step in (-1, 1):
            exists = (coordinates[axis] + step >= 0) & (coordinates[axis] + step < size)
            row_index = np.flatnonzero(exists)
            degree[row_index] += 1
            add(row_index, points[exists] + step * strides[axis], np.ones(row_index.size))
    add(np.arange(points.size), points, -degree)
    laplacian = sparse.csr_matrix((np.concatenate(entries), (np.concatenate(rows), np.concatenate(columns))),
                                  shape=(points.size, unknown_flat.size))
    system = (laplacian.T @ laplacian).tocsr()
    right_hand_side = -(laplacian.T @ known_part)
    if unknown_flat.size <= DIRECT_SOLVE_MAX_UNKNOWNS:
        solution = spsolve(system.tocsc(), right_hand_side)
    else:
        solution, info = cg(system, right_hand_side, rtol=CG_RELATIVE_TOLERANCE, maxiter=20 * unknown_flat.size)
        if info != 0:  # not seen in practice; the direct solve is slow but exact
            solution = spsolve(system.tocsc(), right_hand_side)
    result = flat.copy()
    fixed = np.delete(flat, unknown_flat)
    result[unknown_flat] = np.clip(solution, fixed.min(), fixed.max())
    return result.reshape(shape)


def _component_crops(mask: np.ndarray, margin: int):
    """(crop, inside) of each 26-connected component of ``mask``: its bounding box grown by ``margin``
    voxels (clipped to the volume), and the component's voxels within that crop."""
    labels, _ = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        crop = tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, mask.shape))
        yield crop, labels[crop] == index


def smooth_prefill(image: np.ndarray, paint: np.ndarray, wm: np.ndarray | None = None,
                   spacing: tuple[float, ...] | None = None) -> np.ndarray:
    """``image`` (C, Z, Y, X) with each channel's ``paint`` voxels (bool (Z, Y, X)) biharmonically inpainted,
    in ``image``'s dtype; every other voxel is ``image`` bit for bit.

    With ``wm`` (bool (Z, Y, X), white matter) the voxels within :data:`WM_CONTEXT_REACH_MM` of ``paint``
    (``spacing``: (x, y, z) mm, default 1 mm) that are not white matter are solved for too, so the guess
    continues white matter only (module docstring). A lesion with no white matter left to continue from
    gets the plain continuation.
    """
    result = image.copy()
    if not paint.any():
        return result
    unknown = paint
    if wm is not None:
        near = dilate_mask(paint, spacing=spacing, radius_mm=WM_CONTEXT_REACH_MM)
        unknown = paint | (near & ~np.asarray(wm, dtype=bool))
    # biharmonic_inpaint keeps the input where a crop holds nothing known: those voxels get the plain fill
    stuck = paint & without_boundary(unknown) if unknown is not paint else None
    for channel in range(image.shape[0]):
        filled = biharmonic_inpaint(image[channel], unknown)
        if stuck is not None and stuck.any():
            filled[stuck] = biharmonic_inpaint(image[channel], paint)[stuck]
        result[channel][paint] = filled[paint].astype(image.dtype)
    return result


def without_boundary(mask: np.ndarray, margin: int = 3) -> np.ndarray:
    """bool (Z, Y, X): the voxels of ``mask`` whose 26-connected component's crop (bounding box plus
    ``margin``, as in :func:`biharmonic_inpaint`) holds no voxel outside ``mask``: nothing to continue from."""
    mask = np.asarray(mask, bool)
    result = np.zeros(mask.shape, bool)
    for crop, inside in _component_crops(mask, margin):
        if mask[crop].all():
            result[crop] |= inside
    return result
