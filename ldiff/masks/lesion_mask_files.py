"""``ldiff_make_lesion_masks`` on files: find the cases, check everything, write masks and masks.json.

Layouts (``ending`` is ``.nii.gz`` or ``.nii``):

* Single file: ``-i t1.nii.gz -o mask.nii.gz`` (``-o`` may also be an existing folder, which then
  receives ``{case}.nii.gz``); ``--tissue`` is then one tissue-map file. The case id is the file
  name without ending and without a channel suffix ``_0000``. The run's record is written
  beside the mask as ``mask.json``, so that several single-file runs into one folder keep theirs.
* Folder: ``-i DIR`` holds ``{case}_0000{ending}`` (``--channel K``: ``{case}_{K:04d}``, the
  T1-weighted channel) and ``-o OUT`` receives ``{case}{ending}`` plus ``OUT/masks.json``;
  ``--tissue`` is then a folder of ``{case}{ending}`` tissue maps.

Masks are uint8 0/1 on exactly the input's grid, written atomically. Work happens in RAS+
orientation (real shapes from a lesion library are stored that way) and is mapped back exactly.
No output may be an input; the record is rewritten after every case, so it always describes the
masks on disk. Each case draws from its own stream, seeded from (``--seed``, case id), so a case's
mask does not depend on which other cases are in the folder; the record lists each case's seed.
"""
from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ldiff import paths
from ldiff.errors import LdiffError
from ldiff.masks.lesion_masks import DEFAULT_COUNT, DEFAULT_PERIVENTRICULAR_MM, DEFAULT_RADIUS_MM, \
    lesion_load_ml, propose_lesion_mask
from ldiff.masks.mask_transfer import RegistrationSettings, transfer_mask
from ldiff.masks.target_anatomy import TargetAnatomy, anatomy_from_t1, anatomy_from_tissue
from ldiff.io.cases import case_seed
from ldiff.io import Geometry, geometry_mismatch, load_json, read_image, save_json_atomic, write_image_atomic
from ldiff.masks import LesionLibrary, label_components
from ldiff.preprocessing.orientation import Reorientation, reorient_to_canonical, restore_orientation

logger = logging.getLogger("ldiff")

_NIFTI_ENDINGS = (".nii.gz", ".nii")
RECORD_NAME = "masks.json"


@dataclass(frozen=True)
class MaskRequest:
    """What to make. Proposal: ``count`` or ``load_ml`` (neither: the default count), shapes from
    ``library_source`` (a .npz file or a preprocessed dataset id) or ellipsoids of ``radius_mm``.
    Transfer: ``transfer_t1`` and ``transfer_mask`` of a patient. ``periventricular_mm`` None or 0:
    uniform placement."""

    count: int | None = None
    load_ml: float | None = None
    seed: int = 0
    library_source: str | None = None
    radius_mm: tuple[float, float] = DEFAULT_RADIUS_MM
    periventricular_mm: float | None = DEFAULT_PERIVENTRICULAR_MM
    channel: int = 0
    tissue: Path | None = None
    transfer_t1: Path | None = None
    transfer_mask: Path | None = None

    @property
    def method(self) -> str:
        if self.transfer_t1 is not None:
            return "transfer"
        return "library" if self.library_source is not None else "synthetic"


@dataclass(frozen=True)
class MaskJob:
    """One healthy scan: its T1-weighted image, optional tissue map and the mask to write."""

    case: str
    image_file: Path
    tissue_file: Path | None
    output_file: Path


def validate_request(request: MaskRequest) -> None:
    """Refuse contradictory or impossible options with one sentence."""
    if request.count is not None and request.load_ml is not None:
        raise LdiffError("give either --count or --load, not both.")
    if request.count is not None and request.count < 1:
        raise LdiffError(f"--count must be at least 1, got {request.count}.")
    if request.load_ml is not None and not request.load_ml > 0:
        raise LdiffError(f"--load must be a positive volume in mL, got {request.load_ml}.")
    if request.seed < 0:
        raise LdiffError(f"--seed must be >= 0, got {request.seed}.")
    if request.channel < 0:
        raise LdiffError(f"--channel must be >= 0, got {request.channel}.")
    low, high = request.radius_mm
    if not 0 < low <= high:
        raise LdiffError(f"--radius-mm needs 0 < LOW <= HIGH, got {low} {high}.")
    if request.periventricular_mm is not None and request.periventricular_mm < 0:
        raise LdiffError(f"--periventricular-mm must be >= 0, got {request.periventricular_mm}.")
    if (request.transfer_t1 is None) != (request.transfer_mask is None):
        raise LdiffError("--transfer-from and --transfer-mask go together: give the patient's T1 and its lesion mask.")
    if request.transfer_t1 is not None and (request.count is not None or request.load_ml is not None
                                            or request.library_source is not None):
        raise LdiffError("--transfer-from copies a patient's lesions; "
                         "it cannot be combined with --count, --load or --library-from.")


def nifti_ending(path: Path) -> str | None:
    return next((ending for ending in _NIFTI_ENDINGS if path.name.endswith(ending)), None)


def plan_jobs(input_path: Path, output: Path, channel: int, tissue: Path | None) -> tuple[list[MaskJob], Path]:
    """The jobs of a run and where its record goes; checks that every input file exists."""
    if not input_path.exists():
        raise LdiffError(f"{input_path}: input not found.")
    if output.resolve() == input_path.resolve():
        raise LdiffError(f"{output}: -o is the same as -i; ldiff never overwrites its inputs, choose another output.")
    if input_path.is_file():
        ending = nifti_ending(input_path)
        if ending is None:
            raise LdiffError(f"{input_path}: is not a .nii or .nii.gz file.")
        if tissue is not None and not tissue.is_file():
            raise LdiffError(f"{tissue}: tissue map not found (for a single image --tissue is a file).")
        # "sub1_0000.nii.gz" is case "sub1", as in a folder, so both modes draw the same mask.
        case = re.sub(r"_\d{4}$", "", input_path.name[: -len(ending)])
        if output.is_dir():
            output = output / f"{case}{ending}"
        output_ending = nifti_ending(output)
        if output_ending is None:
            raise LdiffError(f"{output}: the output mask must end in .nii.gz or .nii (or be an existing folder).")
        record = output.with_name(output.name[: -len(output_ending)] + ".json")
        return [MaskJob(case, input_path, tissue, output)], record
    if nifti_ending(output):
        raise LdiffError(f"{output}: for a folder of cases, -o must be a folder, not a file name.")
    if tissue is not None and not tissue.is_dir():
        raise LdiffError(f"{tissue}: for a folder of cases, --tissue must be a folder of {{case}}.nii.gz tissue maps.")
    pattern = re.compile(rf"^(?P<case>.+)_{channel:04d}(?P<ending>\.nii\.gz|\.nii)$")
    jobs = []
    for path in sorted(input_path.iterdir()):
        match = pattern.match(path.name)
        if match is None or not path.is_file():
            continue
        case, ending = match["case"], match["ending"]
        tissue_file = None
        if tissue is not None:
            tissue_file = tissue / f"{case}{ending}"
            if not tissue_file.is_file():
                raise LdiffError(f"{tissue_file}: tissue map of case {case} not found.")
        jobs.append(MaskJob(case, path, tissue_file, output / f"{case}{ending}"))
    if not jobs:
        raise LdiffError(f"{input_path}: contains no {{case}}_{channel:04d}.nii.gz images.")
    return jobs, output / RECORD_NAME


def refuse_overwriting_inputs(jobs: list[MaskJob], record: Path, other_inputs: list[Path]) -> None:
    """Raise if a mask or the record would replace any input file."""
    inputs = {path.resolve(): path for job in jobs for path in (job.image_file, job.tissue_file) if path is not None}
    inputs.update({path.resolve(): path for path in other_inputs})
    for target in [job.output_file for job in jobs] + [record]:
        source = inputs.get(target.resolve())
        if source is not None:
            raise LdiffError(f"{target}: this output would overwrite the input {source}; choose another -o.")


def load_lesion_library(source: str) -> LesionLibrary:
    """Shapes from a library .npz file, or from a preprocessed dataset ("001", "Dataset001_Name").

    A dataset's library is built from (or read from the cache of) all its preprocessed cases by
    :func:`ldiff.masks.library_cache.load_or_build_lesion_library`.
    """
    path = Path(source)
    if source.endswith(".npz") or path.exists() or "/" in source:
        if not path.is_file():
            raise LdiffError(f"{path}: lesion library file not found.")
        try:
            library = LesionLibrary.from_npz(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise LdiffError(f"{path}: is not a lesion library .npz ({error}).") from None
    else:
        from ldiff.masks.library_cache import LIBRARY_PREFIX, load_or_build_lesion_library

        name = paths.find_dataset_name(source, [paths.preprocessed_root()])
        folder = paths.preprocessed_root() / name
        plans_file = folder / "plans.json"
        if not plans_file.is_file():
            raise LdiffError(f"{plans_file}: missing; run ldiff_plan_and_preprocess on {name} first.")
        data_folder = folder / load_json(plans_file)["data_identifier"]
        cases = sorted(p.name[:-4] for p in data_folder.glob("*.npz") if not p.name.startswith(LIBRARY_PREFIX))
        if not cases:
            raise LdiffError(f"{data_folder}: holds no preprocessed cases to take lesion shapes from.")
        library = load_or_build_lesion_library(folder, data_folder.name, cases)
        path = data_folder
    if library is None or len(library) == 0:
        raise LdiffError(f"{path}: the lesion library holds no lesion shapes.")
    return library


def load_target(job: MaskJob) -> tuple[sitk.Image, Reorientation, TargetAnatomy]:
    """Read a healthy scan (and its tissue map); its anatomy in RAS+ orientation. Raises LdiffError."""
    image = read_image(job.image_file)
    canonical, reorientation = reorient_to_canonical(image)
    spacing = tuple(float(v) for v in canonical.GetSpacing())
    if job.tissue_file is None:
        anatomy = anatomy_from_t1(sitk.GetArrayViewFromImage(canonical), spacing)
    else:
        tissue = read_image(job.tissue_file)
        mismatch = geometry_mismatch(Geometry.of(image), Geometry.of(tissue))
        if mismatch is not None:
            raise LdiffError(
                f"{job.tissue_file}: tissue map grid differs from the image {job.image_file} ({mismatch}).")
        labels = reorientation.apply_to_array(sitk.GetArrayViewFromImage(tissue))
        if not np.isin(labels, (0, 1, 2, 3)).all():
            raise LdiffError(f"{job.tissue_file}: a tissue map holds only 0 (background), 1 (CSF), 2 (GM) and 3 (WM).")
        anatomy = anatomy_from_tissue(labels, spacing)
    if not anatomy.wm.any():
        where = job.tissue_file if job.tissue_file is not None else job.image_file
        how = "no voxel has label 3" if job.tissue_file is not None else "is it a skull-stripped T1-weighted scan?"
        raise LdiffError(f"{where}: no white matter found ({how}).")
    return image, reorientation, anatomy


def _write_mask(mask_canonical: np.ndarray, image: sitk.Image, reorientation: Reorientation, path: Path) -> None:
    """Write a canonical bool mask as uint8 0/1 on ``image``'s exact grid."""
    restored = restore_orientation(mask_canonical.astype(np.uint8), reorientation, Geometry.of(image))
    write_image_atomic(restored, path)


def _library_at(library: LesionLibrary | None, spacing: tuple[float, ...], cache: dict) -> LesionLibrary | None:
    """``library`` resampled to ``spacing``, once per distinct spacing of a run (a large library takes seconds)."""
    if library is None or np.allclose(library.spacing, spacing):
        return library
    key = tuple(round(v, 6) for v in spacing)
    if key not in cache:
        cache[key] = library.resampled(spacing)
    return cache[key]


def propose_mask(image: sitk.Image, reorientation: Reorientation, anatomy: TargetAnatomy, request: MaskRequest,
                 library: LesionLibrary | None, seed: int, cache: dict) -> tuple[sitk.Image, dict]:
    """One proposed mask for a scan read by :func:`load_target`: uint8 0/1 on ``image``'s exact grid, and
    its record entry. ``cache`` keeps the library resampled per spacing across calls of a run."""
    library = _library_at(library, anatomy.spacing, cache)
    scale = request.periventricular_mm or None  # 0 means uniform
    proposed = propose_lesion_mask(anatomy, np.random.default_rng(seed), count=request.count,
                                   load_ml=request.load_ml, library=library, radius_mm=request.radius_mm,
                                   periventricular_mm=scale)
    mask = restore_orientation(proposed.mask.astype(np.uint8), reorientation, Geometry.of(image))
    return mask, {"lesions": proposed.lesion_count, "load_ml": round(proposed.load_ml, 4),
                  "periventricular": proposed.periventricular, "shape_source": proposed.shape_source,
                  "wm_source": anatomy.source}


def _propose(job: MaskJob, request: MaskRequest, library: LesionLibrary | None, seed: int, cache: dict) -> dict:
    image, reorientation, anatomy = load_target(job)
    mask, entry = propose_mask(image, reorientation, anatomy, request, library, seed, cache)
    write_image_atomic(mask, job.output_file)
    logger.info("%s: %d lesions, %.2f mL -> %s", job.case, entry["lesions"], entry["load_ml"], job.output_file)
    return entry


def _transfer(job: MaskJob, patient_t1: sitk.Image, patient_mask: sitk.Image, seed: int) -> dict:
    image, reorientation, anatomy = load_target(job)
    try:
        result = transfer_mask(image, patient_t1, patient_mask, seed=seed)
    except RuntimeError as error:  # ITK's exceptions, e.g. when the two images do not overlap at all
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise LdiffError(f"{job.image_file}: registration of the patient image failed ({reason}).") from None
    registered = reorientation.apply_to_array(result.registered)
    kept = registered & anatomy.wm
    _write_mask(kept, image, reorientation, job.output_file)
    registered_ml, kept_ml = lesion_load_ml(registered, anatomy.spacing), lesion_load_ml(kept, anatomy.spacing)
    lost = 1.0 - kept_ml / registered_ml if registered_ml > 0 else 0.0
    if not kept.any():
        logger.warning("%s: no transferred lesion voxel lies in the white matter; the mask is empty", job.case)
    logger.info("%s: %.2f mL transferred; %.2f mL (%.0f %%) fell outside the white matter and was dropped (%.1f s)",
                job.case, registered_ml, registered_ml - kept_ml, 100 * lost, result.seconds)
    return {"lesions": label_components(kept)[1], "load_ml": round(kept_ml, 4),
            "patient_load_ml": round(result.patient_load_ml, 4), "registered_load_ml": round(registered_ml, 4),
            "lost_outside_wm_ml": round(registered_ml - kept_ml, 4), "lost_fraction": round(lost, 4),
            "affine_metric": result.affine_metric, "bspline_metric": result.bspline_metric,
            "registration_seconds": round(result.seconds, 2), "wm_source": anatomy.source}


def _read_patient(request: MaskRequest) -> tuple[sitk.Image, sitk.Image]:
    patient_t1, patient_mask = read_image(request.transfer_t1), read_image(request.transfer_mask)
    mismatch = geometry_mismatch(Geometry.of(patient_t1), Geometry.of(patient_mask))
    if mismatch is not None:
        raise LdiffError(
            f"{request.transfer_mask}: grid differs from the patient image {request.transfer_t1} ({mismatch}).")
    if not np.any(sitk.GetArrayViewFromImage(patient_mask) > 0):
        raise LdiffError(f"{request.transfer_mask}: the patient's lesion mask is empty; there is nothing to transfer.")
    return patient_t1, patient_mask


def _settings(request: MaskRequest) -> dict:
    """The options that shaped this run's masks, JSON-able (the default count written out)."""
    if request.method == "transfer":
        keys = ("tissue", "channel", "transfer_t1", "transfer_mask")
    else:
        keys = ("count", "load_ml", "library_source", "radius_mm", "periventricular_mm", "tissue", "channel")
    settings = {key: (str(value) if isinstance(value, Path) else value)
                for key, value in asdict(request).items() if key in keys}
    if request.method == "transfer":
        settings["registration"] = asdict(RegistrationSettings())
    elif request.count is None and request.load_ml is None:
        settings["count"] = DEFAULT_COUNT
    return settings


def make_lesion_masks(input_path: Path, output: Path, request: MaskRequest) -> dict:
    """Write one lesion mask per healthy scan and the run's record; returns the record."""
    validate_request(request)
    input_path, output = Path(input_path), Path(output)
    jobs, record_path = plan_jobs(input_path, output, request.channel, request.tissue)
    patient_files = [p for p in (request.transfer_t1, request.transfer_mask) if p is not None]
    refuse_overwriting_inputs(jobs, record_path, patient_files)
    library = load_lesion_library(request.library_source) if request.library_source is not None else None
    patient = _read_patient(request) if request.method == "transfer" else None

    record: dict = {"method": request.method, "seed": request.seed, "settings": _settings(request), "cases": {}}
    resampled_libraries: dict = {}
    for job in jobs:
        seed = case_seed(request.seed, job.case)
        if patient is not None:
            entry = _transfer(job, patient[0], patient[1], seed)
        else:
            entry = _propose(job, request, library, seed, resampled_libraries)
        record["cases"][job.case] = {"file": job.output_file.name, "method": request.method, "seed": seed, **entry}
        save_json_atomic(record, record_path)
    return record
