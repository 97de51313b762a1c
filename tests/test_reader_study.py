"""ldiff_reader_study: building a blinded set and scoring filled-in sheets.

Scans are tiny (40^3, two channels) with spherical lesions at known places; voxel values encode their
own index, so a crop's world geometry can be checked voxel by voxel against the source.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_nnunet_dataset, write_nifti
from ldiff.cli import reader_study as cli
from ldiff.errors import LdiffError
from ldiff.evaluation.reader_study.items import crop_image
from ldiff.evaluation.reader_study.make import GroupInput, make_reader_study
from ldiff.evaluation.reader_study.montage import montage_size_pixels
from ldiff.evaluation.reader_study.score import (
    Sheet,
    StudySet,
    clopper_pearson,
    cohen_kappa,
    score_reader_study,
    score_sheets,
)

SHAPE = (40, 40, 40)
RADIUS = 3


def index_volume(offset: float) -> np.ndarray:
    """float32 (z, y, x) whose value is offset + the voxel's flat index: every voxel unique."""
    return (offset + np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)).astype(np.float32)


def write_group(folder: Path, cases: dict[str, list[tuple[int, int, int]]], masks: Path | None = None,
                spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None, channels: int = 2) -> Path:
    """A folder of cases {case}_000c.nii.gz with spheres of RADIUS at the given (z, y, x) centres."""
    z, y, x = np.indices(SHAPE)
    for case, centres in cases.items():
        lesion = np.zeros(SHAPE, np.uint8)
        for cz, cy, cx in centres:
            lesion[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= RADIUS**2] = 1
        for channel in range(channels):
            write_nifti(index_volume(1000.0 * channel), folder / f"{case}_{channel:04d}.nii.gz", spacing, origin,
                        direction)
        write_nifti(lesion, (masks or folder) / f"{case}.nii.gz", spacing, origin, direction)
    return folder


CENTRES = [(12, 12, 12), (26, 26, 26)]


@pytest.fixture
def groups(tmp_path) -> tuple[GroupInput, GroupInput]:
    """Real: cases r1, r2 (masks in a separate folder); synthetic: s1, s2; two lesions per case."""
    write_group(tmp_path / "real", {"patient_r1": CENTRES, "patient_r2": CENTRES}, masks=tmp_path / "real_masks")
    write_group(tmp_path / "synth", {"patient_s1": CENTRES, "patient_s2": CENTRES})
    return GroupInput("real", tmp_path / "real", tmp_path / "real_masks"), GroupInput("synthetic", tmp_path / "synth")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def fill_sheet(path: Path, answer_of) -> None:
    """Fill a blank sheet: answer_of(row) gives the answer text."""
    rows = read_csv(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "synthetic": answer_of(row), "confidence": "3"})


def key_groups(study: Path) -> dict[str, str]:
    return {row["item_id"]: row["group"] for row in read_csv(study / "key.csv")}


def test_make_writes_a_blinded_set(groups, tmp_path):
    out = tmp_path / "study"
    study = make_reader_study(groups, out, 6, ["alice", "bob"], crop_mm=20, min_voxels=10, seed=3, progress=False)
    ids = study["item_ids"]
    assert len(ids) == len(set(ids)) == 6 and ids == sorted(ids)
    for item_id in ids:
        assert re.fullmatch(r"[bcdfghjkmnpqrstvwxz][bcdfghjkmnpqrstvwxz2-9]{7}", item_id)
        assert "patient" not in item_id and "real" not in item_id and "synth" not in item_id
    expected = {f"{i}_000{c}.nii.gz" for i in ids for c in (0, 1)} | {f"{i}.png" for i in ids} | {"README.txt"}
    assert {p.name for p in (out / "items").iterdir()} == expected  # no mask, no key among the readers' files
    assert sorted(p.name for p in (out / "sheets").iterdir()) == ["alice.csv", "bob.csv"]
    for sheet in ("alice", "bob"):
        rows = read_csv(out / "sheets" / f"{sheet}.csv")
        assert [r["item_id"] for r in rows] == ids and all(r["synthetic"] == "" for r in rows)
        assert list(rows[0]) == ["item_id", "synthetic", "confidence"]
    key = read_csv(out / "key.csv")
    assert [r["item_id"] for r in key] == ids
    assert sorted(r["group"] for r in key) == ["real"] * 3 + ["synthetic"] * 3
    assert all(r["case"].startswith("patient_r" if r["group"] == "real" else "patient_s") for r in key)
    readme = (out / "items" / "README.txt").read_text()
    assert "patient" not in readme and "6 items" in readme
    # Every crop is 21 voxels (2 * round(10 / 1) + 1), float32, and its centre is the lesion's centre voxel.
    for row in key:
        crop = sitk.ReadImage(str(out / "items" / f"{row['item_id']}_0000.nii.gz"))
        assert crop.GetSize() == (21, 21, 21) and crop.GetPixelID() == sitk.sitkFloat32
        centre = tuple(int(row[f"centre_{a}"]) for a in "xyz")
        assert centre[::-1] in CENTRES
        assert sitk.GetArrayViewFromImage(crop)[10, 10, 10] == index_volume(0)[centre[::-1]]
    import matplotlib.image

    png = matplotlib.image.imread(str(out / "items" / f"{ids[0]}.png"))
    assert (png.shape[1], png.shape[0]) == montage_size_pixels(2) == (720, 520)
    assert json.loads((out / "study.json").read_text())["key_sha256"] == study["key_sha256"]
    assert not list(tmp_path.glob(".study.*"))  # the staging folder is gone


def test_same_seed_same_set_other_seed_other_ids(groups, tmp_path):
    first = make_reader_study(groups, tmp_path / "a", 2, ["r"], crop_mm=10, seed=5, progress=False)
    second = make_reader_study(groups, tmp_path / "b", 2, ["r"], crop_mm=10, seed=5, progress=False)
    third = make_reader_study(groups, tmp_path / "c", 2, ["r"], crop_mm=10, seed=6, progress=False)
    assert (tmp_path / "a" / "key.csv").read_bytes() == (tmp_path / "b" / "key.csv").read_bytes()
    assert first["item_ids"] == second["item_ids"] != third["item_ids"]


def _red_pixels(png: Path) -> int:
    import matplotlib.image

    rgb = matplotlib.image.imread(str(png))[..., :3]
    return int(np.count_nonzero((rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.4) & (rgb[..., 2] < 0.4)))


def test_mark_writes_the_lesion_mask_and_outlines_it(groups, tmp_path):
    marked, unmarked = tmp_path / "marked", tmp_path / "unmarked"
    make_reader_study(groups, marked, 2, ["r"], crop_mm=16, mark=True, progress=False)
    make_reader_study(groups, unmarked, 2, ["r"], crop_mm=16, mark=False, progress=False)
    for row in read_csv(marked / "key.csv"):
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(marked / "items" / f"{row['item_id']}.nii.gz")))
        assert mask[8, 8, 8] == 1 and int(mask.sum()) == int(row["voxels"]) == 123  # the whole sphere of radius 3
        # the same item (same seed) with and without the red outline
        assert _red_pixels(marked / "items" / f"{row['item_id']}.png") > 50
        assert _red_pixels(unmarked / "items" / f"{row['item_id']}.png") == 0


def test_crop_keeps_world_coordinates_and_pads_with_zeros(tmp_path):
    direction = (-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)  # a flipped axis and two swapped ones
    write_group(tmp_path / "scans", {"c": [(2, 20, 37)]}, spacing=(0.9, 1.1, 1.3), origin=(-10.0, 5.0, 20.0),
                direction=direction, channels=1)
    source = sitk.ReadImage(str(tmp_path / "scans" / "c_0000.nii.gz"))
    array = sitk.GetArrayViewFromImage(source)
    crop = crop_image(source, array, (37, 20, 2), (6, 5, 4))  # reaches past x = 39 and below z = 0
    crop_array = sitk.GetArrayViewFromImage(crop)
    assert crop.GetSize() == (13, 11, 9) and crop.GetDirection() == source.GetDirection()
    inside = padded = 0
    for index in np.ndindex(*crop.GetSize()):
        point = crop.TransformIndexToPhysicalPoint(index)
        source_index = source.TransformPhysicalPointToIndex(point)
        value = crop_array[index[::-1]]
        if all(0 <= i < s for i, s in zip(source_index, source.GetSize())):
            assert value == array[source_index[::-1]]
            inside += 1
        else:
            assert value == 0
            padded += 1
    assert inside == 9 * 11 * 7 and padded == 13 * 11 * 9 - inside  # x 31..39 and z 0..6 lie in the volume


def test_study_centres_are_the_same_world_points(groups, tmp_path):
    out = tmp_path / "study"
    make_reader_study(groups, out, 4, ["r"], crop_mm=12, progress=False)
    for row in read_csv(out / "key.csv"):
        crop = sitk.ReadImage(str(out / "items" / f"{row['item_id']}_0001.nii.gz"))
        world = crop.TransformIndexToPhysicalPoint((6, 6, 6))
        assert np.allclose(world, [float(row[f"world_{a}_mm"]) for a in "xyz"], atol=1e-3)
        centre = tuple(int(row[f"centre_{a}"]) for a in "xyz")
        assert sitk.GetArrayViewFromImage(crop)[6, 6, 6] == index_volume(1000.0)[centre[::-1]]


def test_round_trip_perfect_silent_and_known_readers(groups, tmp_path):
    out = tmp_path / "study"
    make_reader_study(groups, out, 8, ["alice", "bob", "carol", "dave"], crop_mm=10, min_voxels=1, progress=False)
    truth = key_groups(out)
    sheets = out / "sheets"
    fill_sheet(sheets / "alice.csv", lambda row: "yes" if truth[row["item_id"]] == "synthetic" else "no")
    fill_sheet(sheets / "bob.csv", lambda row: "Synthetic" if truth[row["item_id"]] == "synthetic" else "real")
    fill_sheet(sheets / "carol.csv", lambda row: "no")
    synthetic_ids = sorted(i for i, g in truth.items() if g == "synthetic")
    real_ids = sorted(i for i, g in truth.items() if g == "real")
    # dave: 1 of 4 synthetic found, 1 of 4 real called synthetic -> TP 1, FN 3, TN 3, FP 1
    called = {synthetic_ids[0], real_ids[0]}
    fill_sheet(sheets / "dave.csv", lambda row: "y" if row["item_id"] in called else "n")
    report, text = score_reader_study(out, [sheets / f"{n}.csv" for n in ("alice", "bob", "carol", "dave")])
    by_reader = {r["reader"]: r for r in report["readers"]}
    for name in ("alice", "bob"):
        assert by_reader[name]["sensitivity"]["value"] == by_reader[name]["specificity"]["value"] == 1.0
        assert by_reader[name]["detected"] == 4 and by_reader[name]["mean_confidence"] == 3.0
    assert by_reader["carol"]["sensitivity"]["value"] == 0.0 and by_reader["carol"]["specificity"]["value"] == 1.0
    assert by_reader["carol"]["accuracy"]["value"] == 0.5
    dave = by_reader["dave"]
    assert (dave["tp"], dave["fn"], dave["tn"], dave["fp"]) == (1, 3, 3, 1)
    assert dave["accuracy"]["value"] == 0.5 and dave["sensitivity"]["value"] == 0.25
    assert dave["specificity"]["value"] == 0.75
    assert dave["sensitivity"]["ci95"] == pytest.approx(clopper_pearson(1, 4))
    kappas = {tuple(k["readers"]): k["kappa"] for k in report["kappa"]}
    assert kappas[("alice", "bob")] == 1.0
    assert kappas[("alice", "carol")] == 0.0  # carol's constant answer agrees with alice only by chance
    assert kappas[("alice", "dave")] == pytest.approx(0.0)  # dave is right 4 of 8 times with 2 of 8 yes: chance
    pooled = report["pooled"]
    assert (pooled["tp"], pooled["fn"], pooled["tn"], pooled["fp"]) == (9, 7, 15, 1)
    assert "| alice | 4 of 4 |" in text and "| pooled | 9 of 16 |" in text
    assert json.loads((out / "report" / "report.json").read_text())["pooled"]["tp"] == 9
    assert (out / "report" / "report.md").read_text() == text


def test_clopper_pearson_matches_published_values():
    assert clopper_pearson(0, 20)[0] == 0.0
    assert clopper_pearson(0, 20)[1] == pytest.approx(0.1684, abs=5e-5)
    assert clopper_pearson(0, 20)[1] == pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-12)  # closed form at k = 0
    assert clopper_pearson(3, 20) == pytest.approx((0.0321, 0.3789), abs=5e-5)
    assert clopper_pearson(3, 10) == pytest.approx((0.0667, 0.6525), abs=5e-5)
    assert clopper_pearson(20, 20) == pytest.approx((0.025 ** (1 / 20), 1.0), abs=1e-12)
    assert clopper_pearson(0, 0) is None


def test_cohen_kappa_textbook_example():
    # 50 items: both yes 20, first yes and second no 5, first no and second yes 10, both no 15 -> 0.4.
    first = [True] * 25 + [False] * 25
    second = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)
    assert cohen_kappa([False] * 4, [False] * 4) is None  # chance agreement is already perfect


def test_score_sheets_with_hand_computed_numbers(tmp_path):
    """20 items, 10 synthetic; the reader finds 3 of them and calls 2 real ones synthetic."""
    ids = tuple(f"i{n:02d}" for n in range(20))
    generated = {item_id: n < 10 for n, item_id in enumerate(ids)}
    study_set = StudySet(tmp_path, ids, ("real", "synthetic"), "synthetic", generated)
    answers = {item_id: n in (0, 1, 2, 10, 11) for n, item_id in enumerate(ids)}
    report = score_sheets(study_set, [Sheet("r", tmp_path / "r.csv", answers, dict.fromkeys(ids))])
    reader = report["readers"][0]
    assert (reader["tp"], reader["fn"], reader["tn"], reader["fp"]) == (3, 7, 8, 2)
    assert reader["accuracy"]["value"] == 0.55 and reader["sensitivity"]["value"] == 0.3
    assert reader["specificity"]["value"] == 0.8
    assert reader["sensitivity"]["ci95"] == pytest.approx((0.0667, 0.6525), abs=5e-5)
    assert report["kappa"] == [] and report["mean_kappa"] is None
    assert "could not tell" in report["interpretation"]


def _blank_rows(out: Path) -> list[list[str]]:
    return [["item_id", "synthetic", "confidence"]] + [[r["item_id"], "yes", ""] for r in read_csv(out / "key.csv")]


@pytest.mark.parametrize("damage, message", [
    (lambda rows: rows[:-1], r"1 item\(s\) of the set are missing"),
    (lambda rows: rows + [["bcdfghjk", "no", ""]], r"1 item id\(s\) are not in this set \(e\.g\. bcdfghjk\)"),
    (lambda rows: rows + [rows[1]], r"item \w+ appears 2 times"),
    (lambda rows: [rows[0], [rows[1][0], "maybe", ""]] + rows[2:], r"item \w+ has the answer 'maybe'"),
    (lambda rows: [rows[0], [rows[1][0], "", ""]] + rows[2:], r"item \w+ has no answer in the column synthetic"),
    (lambda rows: [rows[0], [rows[1][0], "no", "7"]] + rows[2:], r"item \w+ has the confidence '7'"),
    (lambda rows: [["item_id", "answer"]] + [r[:2] for r in rows[1:]], r"has no column synthetic"),
])
def test_a_sheet_that_does_not_match_the_set_is_refused(groups, tmp_path, damage, message):
    out = tmp_path / "study"
    make_reader_study(groups, out, 4, ["eve"], crop_mm=10, progress=False)
    sheet = tmp_path / "eve.csv"
    with open(sheet, "w", newline="") as handle:
        csv.writer(handle).writerows(damage(_blank_rows(out)))
    with pytest.raises(LdiffError, match=rf"^{re.escape(str(sheet))}: {message}") as error:
        score_reader_study(out, [sheet])
    assert str(error.value).replace("e.g. ", "").count(". ") == 0 and str(error.value).endswith((".", "?"))
    assert not (out / "report").exists()


def test_spreadsheet_exports_are_read_and_an_edited_key_is_refused(groups, tmp_path):
    out = tmp_path / "study"
    make_reader_study(groups, out, 4, ["eve"], crop_mm=10, progress=False)
    sheet = tmp_path / "eve.csv"  # a European spreadsheet's export: BOM, ';', upper case, CRLF
    lines = ["ITEM_ID;Synthetic;Confidence"] + [f"{i.upper()};YES;" for i in key_groups(out)]
    sheet.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    report, _ = score_reader_study(out, [sheet], tmp_path / "scores")
    assert report["readers"][0]["sensitivity"]["value"] == 1.0 and report["readers"][0]["specificity"]["value"] == 0.0
    key = out / "key.csv"
    key.write_text(key.read_text().replace(",real,0,", ",synthetic,1,", 1))
    with pytest.raises(LdiffError, match=rf"^{re.escape(str(key))}: is not the key this set was made with"):
        score_reader_study(out, [sheet])


def test_make_refuses_bad_requests_before_writing(groups, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(LdiffError, match=rf"^{re.escape(str(occupied))}: already exists and is not an empty folder"):
        make_reader_study(groups, occupied, 2, ["r"], progress=False)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    out = tmp_path / "new"
    with pytest.raises(LdiffError, match=r"^the real group has 4 lesion\(s\) of at least 10 voxels in 2 case\(s\), "
                                         r"but the set needs 5 per group"):
        make_reader_study(groups, out, 10, ["r"], progress=False)
    with pytest.raises(LdiffError, match=r"^the real group has 0 lesion\(s\) of at least 200 voxels"):
        make_reader_study(groups, out, 2, ["r"], min_voxels=200, progress=False)
    with pytest.raises(LdiffError, match=r"even number"):
        make_reader_study(groups, out, 3, ["r"], progress=False)
    write_group(tmp_path / "one_channel", {"x": CENTRES}, channels=1)
    with pytest.raises(LdiffError, match=r"different numbers of channels"):
        make_reader_study((groups[0], GroupInput("synthetic", tmp_path / "one_channel")), out, 2, ["r"], progress=False)
    assert not out.exists() and not list(tmp_path.glob(".new.*"))


def test_cli_round_trip_on_the_example_dataset_format(tmp_path, capsys):
    """Real lesions: a tiny nnU-Net dataset's imagesTr + labelsTr; synthetic: another tiny dataset's cases."""
    real = make_nnunet_dataset(tmp_path, "Dataset042_Real", num_cases=3)
    synthetic = make_nnunet_dataset(tmp_path, "Dataset043_Synthetic", num_cases=3)
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as exit_code:
        cli.main(["make", "--real", str(real / "imagesTr"), "--real-masks", str(real / "labelsTr"),
                  "--synthetic", str(synthetic / "imagesTr"), "--synthetic-masks", str(synthetic / "labelsTr"),
                  "-n", "4", "--readers", "ann", "ben", "--crop-mm", "16", "--channel-names", "T1w", "FLAIR",
                  "--mark", "-o", str(out)])
    assert exit_code.value.code == 0
    truth = key_groups(out)
    fill_sheet(out / "sheets" / "ann.csv", lambda row: "yes" if truth[row["item_id"]] == "synthetic" else "no")
    fill_sheet(out / "sheets" / "ben.csv", lambda row: "no")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_code:
        cli.main(["score", str(out), str(out / "sheets" / "ann.csv"), str(out / "sheets" / "ben.csv")])
    assert exit_code.value.code == 0
    printed = capsys.readouterr().out
    assert "| ann | 2 of 2 |" in printed and "| ben | 0 of 2 |" in printed and "ann and ben 0.00" in printed
    with pytest.raises(SystemExit) as exit_code:
        cli.main(["score", str(out), str(out / "sheets" / "ann.csv"), str(out / "sheets" / "ann.csv")])
    assert exit_code.value.code == 1
    sheet = out / "sheets" / "ann.csv"
    assert capsys.readouterr().err.strip() == f"ldiff: error: {sheet}: is given twice; give each sheet once."
