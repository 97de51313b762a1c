"""Classic filling of NIfTI files: one image, or a folder of cases, with every check done up front.

Layouts (``ending`` is ``.nii.gz`` or ``.nii``):

* Single file: ``IN`` is an image, ``mask`` its lesion mask, ``output`` the filled image (for
  several methods, a folder holding ``{method}/{IN's name}``).
* Folder: ``IN`` holds ``{case}_0000{ending}`` (first channel) and possibly ``{case}_0001...``;
  every channel present is filled with the case's lesion mask ``{case}{ending}``, found in ``IN``
  or in ``masks_dir``. Outputs are ``{output}/{case}_{XXXX}{ending}`` (for several methods
  ``{output}/{method}/...``). A WM mask is then a folder of ``{case}{ending}`` files.

Every file is read and checked before anything is written (missing files, grids, binary masks,
NaN/truncation through ``read_image``), and no output may coincide with an input, so a refused run
writes nothing. Outputs are written atomically with the input's geometry and pixel type: float
types are cast back directly; integer types are rounded to the nearest integer and clipped to the
type's range (a Gaussian draw can exceed e.g. 255 in a uint8 image).
"""
from __future__ import annotations

import logging
from pathlib import Path

import SimpleITK as sitk

from ldiff.errors import LdiffError
from ldiff.evaluation.classic.dispatch import CLASSIC_METHODS, classic_fill
from ldiff.io import Geometry, array_to_image, write_image_atomic
from ldiff.io.cases import (CheckedJobs, FillJob, case_seed, cast_to_dtype, load_job, plan_folder, plan_single,
                            refuse_overwriting_inputs)

logger = logging.getLogger("ldiff")


def fill_job(job: FillJob, dilate: int, seed: int, method_options: dict[str, dict], loaded: tuple | None = None
             ) -> list[Path]:
    """Fill every channel of ``job`` with every method; returns the paths written.

    ``loaded``: the job's files as :func:`load_job` returns them, when already read (else read here).
    """
    images, lesions, wm = loaded if loaded is not None else load_job(job)
    spacing = images[0].GetSpacing()
    if dilate > 0:
        from ldiff.masks.morphology import dilate_mask

        lesions = dilate_mask(lesions, radius_voxels=dilate, spacing=spacing, shape="ball")
    if not lesions.any():
        logger.warning("%s: the lesion mask is empty; the output is the input unchanged.", job.mask_file)
    written = []
    for method, outputs in job.outputs.items():
        for channel, (image, output) in enumerate(zip(images, outputs)):
            array = sitk.GetArrayFromImage(image)
            if lesions.any():
                try:
                    filled = classic_fill(array, lesions, method, spacing, case_seed(seed, job.case, channel),
                                          wm, **method_options.get(method, {}))
                except ValueError as error:  # e.g. a mask covering the whole image leaves nothing to copy
                    raise LdiffError(f"{job.image_files[channel]}: {method} filling failed: {error}.") from None
                array = cast_to_dtype(filled, array.dtype)
            write_image_atomic(array_to_image(array, Geometry.of(image)), output)
            written.append(output)
    return written


def fill_classic_files(
    input_path: str | Path,
    output_path: str | Path,
    method: str = "all",
    mask: str | Path | None = None,
    masks_dir: str | Path | None = None,
    wm: str | Path | None = None,
    dilate: int = 0,
    seed: int = 0,
    method_options: dict[str, dict] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fill the lesions of one image or of a folder of cases with one or all classic methods.

    ``method``: one of ``CLASSIC_METHODS`` or ``"all"``. ``dilate``: grow the lesion mask by a ball
    of this many voxels (along the finest axis) before filling. ``seed``: base seed; each case and
    channel gets its own stream derived from it (see :func:`case_seed`). ``method_options``: per
    method keyword options, e.g. ``{"rim": {"hypointense_only": True}}``. Returns the written paths.
    Raises LdiffError, before writing anything, for any problem with the inputs.
    """
    from tqdm import tqdm

    input_path, output_path = Path(input_path), Path(output_path)
    if method != "all" and method not in CLASSIC_METHODS:
        raise LdiffError(f"unknown method {method!r}; choose one of {', '.join(CLASSIC_METHODS)} or all.")
    if dilate < 0:
        raise LdiffError(f"--dilate must be 0 or more voxels, got {dilate}.")
    methods = list(CLASSIC_METHODS) if method == "all" else [method]
    paths = [None if p is None else Path(p) for p in (mask, masks_dir, wm)]
    if paths[2] is not None and not paths[2].exists():
        raise LdiffError(f"{paths[2]}: WM mask not found.")
    if input_path.is_dir():
        jobs = plan_folder(input_path, output_path, methods, *paths)
    elif input_path.is_file():
        jobs = plan_single(input_path, output_path, methods, *paths)
    else:
        raise LdiffError(f"{input_path}: input not found.")
    refuse_overwriting_inputs(input_path, output_path, jobs)
    checked = CheckedJobs(jobs)  # every check before the first write; each file is read once
    written = []
    for job in tqdm(jobs, desc="classic fill", unit="case", disable=not progress):
        written.extend(fill_job(job, dilate, seed, method_options or {}, checked.take(job)))
    return written
