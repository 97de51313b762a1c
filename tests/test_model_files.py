"""The model-file format has one owner (ldiff.io.model_files), and data flows one way between stages."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from ldiff.errors import LdiffError
from ldiff.io.model_files import (
    FINAL_NAME,
    MODEL_JSON,
    final_checkpoint_state,
    read_model_json,
    read_model_weights,
    save_checkpoint,
    write_model_json,
)
from test_predict import make_model_folder

PACKAGE = Path(__file__).resolve().parent.parent / "ldiff"


def test_model_json_round_trips_and_the_final_checkpoint_must_agree_with_it(tmp_path):
    folder = make_model_folder(tmp_path, "cond_fill", "2d")
    description = read_model_json(folder)
    write_model_json(description, tmp_path / "copy")
    assert read_model_json(tmp_path / "copy") == description
    assert not list((tmp_path / "copy").glob(".*"))  # no temporary file left behind

    found, weights, step = read_model_weights(folder)
    assert found == description and step == 1 and all(isinstance(v, torch.Tensor) for v in weights.values())

    # A checkpoint from another training beside this model.json is refused, not silently used.
    other = final_checkpoint_state(1, weights, {**description, "task": "cond_synth"})
    save_checkpoint(other, folder / FINAL_NAME)
    with pytest.raises(LdiffError, match="its task differ from .*model.json"):
        read_model_weights(folder)


def test_damaged_files_are_one_sentence(tmp_path):
    (tmp_path / MODEL_JSON).write_text("{not json")
    with pytest.raises(LdiffError, match="cannot be read as JSON"):
        read_model_json(tmp_path)
    (tmp_path / MODEL_JSON).write_text(json.dumps({"task": "paint", "network": {}}))
    with pytest.raises(LdiffError, match="is not an ldiff model description"):
        read_model_json(tmp_path)
    folder = make_model_folder(tmp_path, "cond_fill", "2d")
    torch.save({"format_version": 99}, folder / FINAL_NAME)
    with pytest.raises(LdiffError, match="format version 1"):
        read_model_weights(folder)
    with pytest.raises(LdiffError, match="try -chk final"):
        read_model_weights(folder, "latest")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_prediction_and_the_other_stages_never_import_training():
    """Data flows one way: a trained model is used through its files, never through the trainer."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "training":
            continue  # training itself, with its thin command-line entry point (training/command.py)
        if any(name == "ldiff.training" or name.startswith("ldiff.training.") for name in imported_modules(path)):
            offenders.append(str(relative))
    assert offenders == []


def test_library_modules_do_not_import_the_command_line_layer():
    offenders = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
                 if path.relative_to(PACKAGE).parts[0] != "cli"
                 and any(name.startswith("ldiff.cli") for name in imported_modules(path))]
    assert offenders == []


def test_only_the_task_objects_branch_on_what_a_task_is():
    """What differs between the four tasks lives in ldiff/tasks: nobody else reads the task flags or
    compares against a task's name (model_files only records the flags into model.json)."""
    from ldiff.tasks import TASK_NAMES

    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "tasks" or relative == Path("io/model_files.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("conditional", "paints_lesions"):
                offenders.append(f"{relative}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Compare):
                constants = [part for part in [node.left, *node.comparators] if isinstance(part, ast.Constant)]
                if any(constant.value in TASK_NAMES for constant in constants):
                    offenders.append(f"{relative}:{node.lineno} compares with a task name")
    assert offenders == []
