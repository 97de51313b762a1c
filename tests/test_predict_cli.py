"""ldiff_predict on files: layouts, checks before writing, --continue, --num-parts, --preview and the CLI.

Models are the hand-built tiny ones of ``test_predict.py`` (random weights, a fraction of a second per
case); the command line runs in a subprocess twice (a success and a refusal), the rest calls
:func:`ldiff.inference.files.predict_files`.
"""
from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import phantom_case
from ldiff.errors import LdiffError
from ldiff.inference import files
from ldiff.inference.files import ModelChoice, predict_files
from ldiff.inference.predictor import SamplingOptions
from test_predict import as_image, dilated, make_model_folder

pytestmark = pytest.mark.usefixtures("one_thread")

REPOSITORY = Path(__file__).resolve().parent.parent
FAST = SamplingOptions(steps=2)
CASES = ("case_a", "case_b", "case_c")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models"), "cond_fill", "p3d")


def write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def make_folder(root: Path, cases=CASES, masks_elsewhere: bool = False) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Cases with an int16 T1 and a float32 FLAIR; returns (image folder, mask folder, lesions per case)."""
    images, masks = root / "images", root / ("masks" if masks_elsewhere else "images")
    lesions = {}
    for index, case in enumerate(cases):
        t1, flair, lesion, _ = phantom_case(seed=index, lesion_centres=((16 + index, 22, 14),))
        write(as_image(np.rint(t1), np.int16), images / f"{case}_0000.nii.gz")
        write(as_image(flair), images / f"{case}_0001.nii.gz")
        write(as_image(lesion, np.uint8), masks / f"{case}.nii.gz")
        lesions[case] = lesion.astype(bool)
    return images, masks, lesions


def run(inputs, output, model_folder, **keywords):
    keywords.setdefault("options", FAST)
    return predict_files([str(path) for path in inputs] if isinstance(inputs, list) else [str(inputs)], output,
                         ModelChoice(model_folder, device="cpu"), progress=False, **keywords)


def run_cli(*arguments) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ldiff.cli.predict", *map(str, arguments)], cwd=REPOSITORY,
                          env=environment, capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def assert_outside_unchanged(source: Path, output: Path, lesion: np.ndarray) -> None:
    before, after = sitk.ReadImage(str(source)), sitk.ReadImage(str(output))
    assert after.GetPixelID() == before.GetPixelID()
    for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(after, getter)() == getattr(before, getter)()
    outside = ~dilated(lesion)
    assert np.array_equal(sitk.GetArrayFromImage(before)[outside], sitk.GetArrayFromImage(after)[outside])


# ---- the command line (subprocess) ------------------------------------------------------------------
def test_cli_single_case_with_several_channel_files(tmp_path, model_folder):
    images, _, lesions = make_folder(tmp_path, cases=("one",))
    mask = tmp_path / "lesions.nii.gz"
    (images / "one.nii.gz").rename(mask)
    out = tmp_path / "out"
    result = run_cli("-i", images / "one_0000.nii.gz", images / "one_0001.nii.gz", "--mask", mask, "-o", out,
                     "-m", model_folder, "--steps", "2", "--device", "cpu", "--preview")
    assert result.returncode == 0, result.stderr
    for channel in ("0000", "0001"):
        assert_outside_unchanged(images / f"one_{channel}.nii.gz", out / f"one_{channel}.nii.gz", lesions["one"])
    assert (out / "one_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_mask_grid_mismatch_is_one_sentence_and_writes_nothing(tmp_path, model_folder):
    images, _, lesions = make_folder(tmp_path, cases=("one",))
    mask = write(as_image(lesions["one"], np.uint8, spacing=(1.0, 1.0, 1.0)), tmp_path / "shifted.nii.gz")
    out = tmp_path / "out"
    message = one_line_error(run_cli("-i", images / "one_0000.nii.gz", images / "one_0001.nii.gz", "--mask", mask,
                                     "-o", out, "-m", model_folder, "--device", "cpu"))
    assert message.startswith("ldiff: error:") and str(mask) in message and "grid differs" in message
    assert not out.exists()


# ---- folder mode, continue, parts, preview ----------------------------------------------------------
def test_folder_mode_writes_every_case_and_channel(tmp_path, model_folder):
    images, masks, lesions = make_folder(tmp_path, masks_elsewhere=True)
    out = tmp_path / "out"
    written = run(images, out, model_folder, masks_dir=masks)
    assert sorted(path.name for path in written) == sorted(f"{c}_{k}.nii.gz" for c in CASES for k in ("0000", "0001"))
    for case in CASES:
        for channel in ("0000", "0001"):
            name = f"{case}_{channel}.nii.gz"
            assert_outside_unchanged(images / name, out / name, lesions[case])
    assert not list(out.glob(".*tmp*")), "an atomic write left a temporary file behind"


def test_continue_skips_finished_cases_and_redoes_a_case_with_a_missing_output(tmp_path, model_folder, monkeypatch):
    images, _, _ = make_folder(tmp_path)
    out = tmp_path / "out"
    run(images, out, model_folder)
    (out / "case_b_0001.nii.gz").unlink()
    done = []
    original = files.predict_case
    monkeypatch.setattr(files, "predict_case",
                        lambda predictor, job, *rest: done.append(job.case) or original(predictor, job, *rest))
    run(images, out, model_folder, continue_run=True)
    assert done == ["case_b"] and (out / "case_b_0001.nii.gz").is_file()
    assert run(images, out, model_folder, continue_run=True) == [] and done == ["case_b"]


def test_parts_are_disjoint_and_cover_every_case_with_case_seeds_independent_of_the_split(tmp_path, model_folder):
    images, _, _ = make_folder(tmp_path)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(images, whole, model_folder)
    first = {path.name for path in run(images, parts, model_folder, num_parts=2, part_id=0)}
    second = {path.name for path in run(images, parts, model_folder, num_parts=2, part_id=1)}
    assert first and second and not first & second
    assert first | second == {path.name for path in whole.iterdir()}
    for name in first | second:
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(whole / name))),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(parts / name))))
    with pytest.raises(LdiffError, match="--part-id must be in 0..1"):
        run(images, parts, model_folder, num_parts=2, part_id=2)


def test_preview_writes_a_png_per_case(tmp_path, model_folder):
    images, _, _ = make_folder(tmp_path, cases=("case_a",))
    written = run(images, tmp_path / "out", model_folder, preview=True)
    preview = tmp_path / "out" / "case_a_preview.png"
    assert preview in written and preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_mask_writes_the_input_unchanged_with_a_warning(tmp_path, model_folder, caplog):
    images, _, lesions = make_folder(tmp_path, cases=("case_a",))
    write(as_image(np.zeros_like(lesions["case_a"]), np.uint8), images / "case_a.nii.gz")
    with caplog.at_level(logging.WARNING, logger="ldiff"):
        run(images, tmp_path / "out", model_folder)
    assert "empty" in caplog.text and str(images / "case_a.nii.gz") in caplog.text
    for channel in ("0000", "0001"):
        source = sitk.ReadImage(str(images / f"case_a_{channel}.nii.gz"))
        output = sitk.ReadImage(str(tmp_path / "out" / f"case_a_{channel}.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(output))


# ---- refusals: one sentence naming the file, nothing written ------------------------------------------
def refused(inputs, output, model_folder, match: str, **keywords) -> str:
    with pytest.raises(LdiffError, match=match) as error:
        run(inputs, output, model_folder, **keywords)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_outputs_that_would_replace_inputs_are_refused(tmp_path, model_folder):
    images, _, _ = make_folder(tmp_path, cases=("case_a",))
    refused(images, images, model_folder, "same as -i")
    t1 = images / "case_a_0000.nii.gz"
    refused([t1], t1, model_folder, "same as -i", mask=images / "case_a.nii.gz")
    refused([t1, images / "case_a_0001.nii.gz"], images, model_folder, "would overwrite the input",
            mask=images / "case_a.nii.gz")


def test_bad_masks_are_one_sentence_naming_the_file(tmp_path, model_folder):
    images, _, lesions = make_folder(tmp_path, cases=("case_a",))
    mask = images / "case_a.nii.gz"
    write(as_image(lesions["case_a"] * 2, np.uint8), mask)
    assert str(mask) in refused(images, tmp_path / "out", model_folder, "is not binary")
    outside = np.zeros_like(lesions["case_a"])
    outside[0, 0, :3] = True
    write(as_image(outside, np.uint8), mask)
    assert str(mask) in refused(images, tmp_path / "out", model_folder, "no mask voxel lies inside the brain")
    mask.unlink()
    refused(images, tmp_path / "out", model_folder, "lesion mask of case case_a not found")
    assert not (tmp_path / "out").exists()


def test_missing_channels_and_channel_count_mismatches_are_refused(tmp_path, model_folder):
    images, _, _ = make_folder(tmp_path, cases=("case_a", "case_b"))
    missing = images / "case_b_0001.nii.gz"
    missing.unlink()
    message = refused(images, tmp_path / "out", model_folder, "channel 1 \\(FLAIR\\) of case case_b is missing")
    assert str(missing) in message
    assert not (tmp_path / "out").exists(), "case_a must not be written before case_b is checked"
    refused([images / "case_a_0000.nii.gz"], tmp_path / "one.nii.gz", model_folder,
            "-i got 1 image\\(s\\) but the model .* expects 2 channel", mask=images / "case_a.nii.gz")


def test_unreadable_truncated_and_nan_files_are_one_sentence_naming_the_file(tmp_path, model_folder):
    images, _, lesions = make_folder(tmp_path, cases=("case_a",))
    flair = images / "case_a_0001.nii.gz"
    data = flair.read_bytes()
    flair.write_bytes(data[: len(data) // 2])
    assert str(flair) in refused(images, tmp_path / "out", model_folder, "truncated|cannot be read")
    flair.write_bytes(b"this is not a NIfTI file")
    assert str(flair) in refused(images, tmp_path / "out", model_folder, "cannot be read|truncated")
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(images / "case_a_0000.nii.gz"))).astype(np.float32)
    values[5, 5, 5] = np.nan
    write(as_image(values), flair)
    assert str(flair) in refused(images, tmp_path / "out", model_folder, "NaN or Inf")
    assert gzip.decompress(data)  # the original was a valid gzip stream: the damage above is what was tested


def test_a_model_of_another_task_is_refused(tmp_path, model_folder):
    images, _, _ = make_folder(tmp_path, cases=("case_a",))
    with pytest.raises(LdiffError, match="holds a cond_fill model, not uncond_synth"):
        predict_files([str(images)], tmp_path / "out", ModelChoice(model_folder, task="uncond_synth", device="cpu"),
                      FAST, progress=False)


# ---- the files are what the library computes, and a failed write keeps nothing half-done ----------------
def test_written_files_are_bit_identical_to_the_predictor_output(tmp_path, model_folder):
    from ldiff.io.cases import case_seed
    from ldiff.inference.predictor import Predictor

    images, _, lesions = make_folder(tmp_path, cases=("case_a", "case_b"))
    run(images, tmp_path / "out", model_folder, seed=11)
    predictor = Predictor.from_folder(model_folder, options=FAST)
    for case in ("case_a", "case_b"):
        inputs = [sitk.ReadImage(str(images / f"{case}_{channel}.nii.gz")) for channel in ("0000", "0001")]
        expected = predictor.predict(inputs, lesions[case], seed=case_seed(11, case)).images
        for channel, image in zip(("0000", "0001"), expected):
            written = sitk.ReadImage(str(tmp_path / "out" / f"{case}_{channel}.nii.gz"))
            assert written.GetPixelID() == image.GetPixelID()
            assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(image)), (case, channel)


def test_a_write_that_fails_keeps_no_part_of_the_case_and_says_which_file(tmp_path, model_folder, monkeypatch):
    images, _, _ = make_folder(tmp_path, cases=("case_a",))
    real_write = files.write_image_atomic

    def failing_write(image, path, *arguments, **keywords):
        if str(path).endswith("_0001.nii.gz"):
            raise OSError(28, "No space left on device")
        return real_write(image, path, *arguments, **keywords)

    monkeypatch.setattr(files, "write_image_atomic", failing_write)
    message = refused(images, tmp_path / "out", model_folder, match="case_a_0001.nii.gz: cannot be written")
    assert "No space left on device" in message and "--continue" in message
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(files, "write_image_atomic", real_write)
    run(images, tmp_path / "out", model_folder, continue_run=True)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["case_a_0000.nii.gz", "case_a_0001.nii.gz"]


def test_each_input_file_is_read_once(tmp_path, model_folder, monkeypatch):
    """The up-front check keeps what it read for the prediction (within a memory budget), so nothing
    is decompressed twice; past the budget, the files are read again rather than held."""
    from ldiff.io import cases

    images, _, _ = make_folder(tmp_path, cases=("case_a", "case_b"))
    reads: list[str] = []
    real_read = cases.read_image
    monkeypatch.setattr(cases, "read_image", lambda path: reads.append(Path(path).name) or real_read(path))
    run(images, tmp_path / "out", model_folder)
    assert sorted(reads) == sorted(f"{case}{suffix}.nii.gz" for case in ("case_a", "case_b")
                                   for suffix in ("_0000", "_0001", ""))
    reads.clear()
    monkeypatch.setattr(cases, "KEEP_CHECKED_BYTES", 0)
    run(images, tmp_path / "again", model_folder)
    assert len(reads) == 12  # read to check, and again to predict


def test_cli_refuses_wrong_paths_before_loading_torch(tmp_path):
    """A missing input, a missing mask or an output over an input is refused before torch is imported."""
    image = write(as_image(np.zeros((4, 8, 8), np.float32)), tmp_path / "t1.nii.gz")
    cases = [(["-i", tmp_path / "missing.nii.gz", "--mask", image, "-o", tmp_path / "out.nii.gz"], "input not found"),
             (["-i", image, "--mask", tmp_path / "missing_mask.nii.gz", "-o", tmp_path / "out.nii.gz"], "mask not found"),
             (["-i", image, "--mask", image, "-o", image], "")]
    for arguments, expected in cases:
        code = ("import sys\nfrom ldiff.cli.predict import main\nsys.argv = ['ldiff_predict'] + sys.argv[1:]\n"
                "try:\n    main()\nexcept SystemExit as stop:\n"
                "    print(stop.code, 'torch' in sys.modules)\n")
        result = subprocess.run([sys.executable, "-c", code, *map(str, arguments)], capture_output=True, text=True,
                                timeout=120)
        assert result.stdout.split() == ["1", "False"], (arguments, result.stdout, result.stderr)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_previews_are_named_after_their_output_beside_it(tmp_path):
    from ldiff.inference.jobs import plan_jobs

    t1 = write(as_image(np.zeros((4, 8, 8), np.float32)), tmp_path / "t1.nii.gz")
    mask = write(as_image(np.zeros((4, 8, 8), np.uint8), np.uint8), tmp_path / "lesions.nii.gz")
    (job,) = plan_jobs([t1], tmp_path / "out" / "filled.nii.gz", mask)
    assert files.preview_path(job) == tmp_path / "out" / "filled_preview.png"
    images, _, _ = make_folder(tmp_path / "folder", cases=("case_a",))
    (job,) = plan_jobs([images], tmp_path / "out2")
    assert files.preview_path(job) == tmp_path / "out2" / "case_a_preview.png"


def test_own_lesion_masks_give_a_cued_synthesis_its_contrast_and_a_missing_one_is_refused(tmp_path, monkeypatch):
    """--lesion-intensity-from with a folder of the cases' own lesion masks: each case's prediction gets its
    own mask; a case without one stops the run before anything is written."""
    from ldiff.inference.predictor import Predictor

    cued = make_model_folder(tmp_path / "models", "cond_synth", "2d", lesion_level_cue=True)
    images, masks, lesions = make_folder(tmp_path / "in", cases=("case_a", "case_b"), masks_elsewhere=True)
    own = tmp_path / "own"
    for case, lesion in lesions.items():
        elsewhere = np.roll(lesion, 6, axis=2)  # "the patient's own lesions": another place in the scan
        write(as_image(elsewhere, np.uint8), own / f"{case}.nii.gz")
    with pytest.raises(LdiffError, match="case_b.nii.gz: no such own-lesion mask"):
        (own / "case_b.nii.gz").rename(tmp_path / "kept.nii.gz")
        run(images, tmp_path / "refused", cued, masks_dir=masks, lesion_intensity_from=own)
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    (tmp_path / "kept.nii.gz").rename(own / "case_b.nii.gz")
    with pytest.raises(LdiffError, match="not both"):
        run(images, tmp_path / "both", cued, masks_dir=masks, lesion_intensity_from=own, lesion_intensity=["0.1"])

    # Each case's prediction is given that case's own mask (the networks here ignore their conditioning;
    # test_predict_oracle.py checks what the model is then told).
    seen = {}
    original = Predictor.predict

    def recording(self, images, mask, **keywords):
        seen[Path(keywords["image_name"]).name] = keywords["lesion_intensity_from"]
        return original(self, images, mask, **keywords)

    monkeypatch.setattr(Predictor, "predict", recording)
    run(images, tmp_path / "out", cued, masks_dir=masks, lesion_intensity_from=own, seed=3)
    for case, lesion in lesions.items():
        assert np.array_equal(seen[f"{case}_0000.nii.gz"], np.roll(lesion, 6, axis=2))
        assert (tmp_path / "out" / f"{case}_0001.nii.gz").is_file()
