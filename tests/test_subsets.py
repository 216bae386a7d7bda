"""Subsets and label maps: ESC-10 (real, from ../shared/data), ESC-10 rows of an ESC-50 layout,
and a user's own labelled sounds with any category names and target ids."""

import json
import shutil
from pathlib import Path

import pytest
from recipe_runs import run_script, tiny_args

from data_prep.datasets import expected_n_classes
from data_prep.esc50 import (
    ESC50Error,
    data_label_map,
    label_map,
    prepare_esc50,
    read_labels,
    select_subset,
)
from data_prep.synthetic import generate_synthetic_esc50

ESC10_TARGETS = [0, 1, 10, 11, 12, 20, 21, 38, 40, 41]
ESC10_CLASSES = [
    "dog",
    "rooster",
    "rain",
    "sea_waves",
    "crackling_fire",
    "crying_baby",
    "sneezing",
    "clock_tick",
    "helicopter",
    "chainsaw",
]


def _rewrite_rows(folder: Path, edit) -> None:
    """Applies ``edit(fields) -> fields`` to each data row of ``meta/esc50.csv``."""
    path = folder / "meta" / "esc50.csv"
    lines = path.read_text().splitlines()
    rows = [",".join(edit(line.split(","))) for line in lines[1:]]
    path.write_text("\n".join([lines[0], *rows]) + "\n")


@pytest.fixture
def own_sounds(tmp_path):
    """A user's own labelled sounds in ESC-50's layout: 3 classes with the target ids 7, 103 and
    42 and names of their own (synthetic audio; 2 clips per class and fold)."""
    folder = tmp_path / "my_sounds"
    generate_synthetic_esc50(folder, n_classes=3, clips_per_class_per_fold=2, duration=1.0)
    renamed = {"0": ("103", "kettle"), "1": ("7", "doorbell"), "2": ("42", "cat_purr")}

    def edit(fields):
        filename, fold, target, _, esc10, src, take = fields
        new_target, name = renamed[target]
        new_name = f"{fold}-{src}-{take}-{new_target}.wav"
        (folder / "audio" / filename).rename(folder / "audio" / new_name)
        return [new_name, fold, new_target, name, esc10, src, take]

    _rewrite_rows(folder, edit)
    return folder


def test_esc10_of_the_real_esc10_folder(real_esc10, tmp_path):
    manifests = prepare_esc50(real_esc10, tmp_path / "save", subset="esc10", download=False)
    labels = read_labels(tmp_path / "save")
    assert [entry["target"] for entry in labels] == ESC10_TARGETS
    assert [entry["label"] for entry in labels] == list(range(10))
    assert [entry["class_name"] for entry in labels] == ESC10_CLASSES
    counts = {}
    for split, path in manifests.items():
        entries = json.loads(path.read_text())
        counts[split] = len(entries)
        for entry in entries.values():
            assert entry["path"].endswith(".ogg")
            assert labels[entry["label"]]["target"] == entry["target"]
            assert labels[entry["label"]]["class_name"] == entry["class_name"]
    assert counts == {"train": 240, "valid": 80, "test": 80}
    # the ESC-10 folder's CSV holds only ESC-10 rows: esc50 selects the same clips
    assert data_label_map(real_esc10, "esc50") == labels
    assert expected_n_classes(real_esc10, "esc10")[0] == 10


def test_esc10_rows_of_an_esc50_layout(tmp_path):
    folder = tmp_path / "esc50"
    generate_synthetic_esc50(folder, n_classes=4, clips_per_class_per_fold=1, duration=1.0)
    # mark classes 1 and 3 as ESC-10 (as the esc10 column of the real ESC-50 CSV does)
    _rewrite_rows(folder, lambda f: [*f[:4], "True" if f[2] in "13" else "False", *f[5:]])
    assert expected_n_classes(folder, "esc50")[0] == 4
    assert expected_n_classes(folder, "esc10")[0] == 2
    manifests = prepare_esc50(folder, tmp_path / "save", subset="esc10", download=False)
    assert read_labels(tmp_path / "save") == [
        {"label": 0, "target": 1, "class_name": "class_01"},
        {"label": 1, "target": 3, "class_name": "class_03"},
    ]
    test = json.loads(manifests["test"].read_text())
    assert sorted((e["target"], e["label"]) for e in test.values()) == [(1, 0), (3, 1)]
    # changing the subset rebuilds the manifests
    prepare_esc50(folder, tmp_path / "save", subset="esc50", download=False)
    assert len(read_labels(tmp_path / "save")) == 4


def test_own_labelled_sounds_get_contiguous_labels(own_sounds, tmp_path):
    manifests = prepare_esc50(own_sounds, tmp_path / "save", download=False)
    assert read_labels(tmp_path / "save") == [
        {"label": 0, "target": 7, "class_name": "doorbell"},
        {"label": 1, "target": 42, "class_name": "cat_purr"},
        {"label": 2, "target": 103, "class_name": "kettle"},
    ]
    entries = json.loads(manifests["train"].read_text())
    assert {(e["class_name"], e["label"]) for e in entries.values()} == {
        ("doorbell", 0),
        ("cat_purr", 1),
        ("kettle", 2),
    }


@pytest.mark.parametrize(
    "rows, subset, message",
    [
        ([{"filename": "a", "esc10": "maybe"}], "esc10", "esc10 column of a is 'maybe'"),
        ([{"filename": "a", "esc10": "False"}], "esc10", "subset esc10 is empty"),
        ([{"filename": "a", "esc10": "True"}], "esc100", "subset must be one of esc50, esc10"),
    ],
)
def test_bad_subsets_are_named(rows, subset, message):
    with pytest.raises(ESC50Error, match=message):
        select_subset(rows, subset)


def test_label_map_refuses_ambiguous_names():
    rows = [
        {"filename": "a", "target": 3, "category": "dog"},
        {"filename": "b", "target": 3, "category": "hound"},
    ]
    with pytest.raises(ESC50Error, match="target 3 is named both 'dog' .a. and 'hound' .b."):
        label_map(rows)
    rows[1] = {"filename": "b", "target": 4, "category": "dog"}
    with pytest.raises(ESC50Error, match="class 'dog' has two targets, 3 and 4"):
        label_map(rows)


def test_n_classes_mismatch_is_one_line_before_anything_is_written(real_esc10, tmp_path):
    out = tmp_path / "run"
    args = tiny_args("focalnet", "focalnet", real_esc10, out, "--subset=esc10")
    args[args.index("--n_classes=3")] = "--n_classes=42"
    result = run_script("train_classifier.py", args)
    assert result.returncode != 0
    message = result.stderr.strip()
    assert message == (
        f"train_classifier.py: n_classes is 42 but subset esc10 of {real_esc10} has 10 classes: "
        "drop --n_classes (it follows from the data) or set --n_classes=10"
    )
    assert not out.exists()


def test_own_sounds_train_and_interpret_with_their_names(own_sounds, tmp_path):
    """A user's own labelled folder trains with n_classes from the data (no --n_classes), and
    the run's outputs and interpret.py speak its class names and target ids."""
    data = tmp_path / "data"
    shutil.copytree(own_sounds, data)
    out = tmp_path / "run"
    args = tiny_args("focalnet", "focalnet", data, out, "--pretrained=False")
    args.remove("--n_classes=3")
    result = run_script("train_classifier.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads((out / "model.json").read_text())
    expected = [
        {"label": 0, "target": 7, "class_name": "doorbell"},
        {"label": 1, "target": 42, "class_name": "cat_purr"},
        {"label": 2, "target": 103, "class_name": "kettle"},
    ]
    assert card["n_classes"] == 3 and card["labels"] == expected and card["subset"] == "esc50"
    assert card["class_names"] == ["doorbell", "cat_purr", "kettle"]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["labels"] == expected
    assert set(metrics["per_class_acc"]) == {"doorbell", "cat_purr", "kettle"}
    pngs = sorted((out / "interpretations").glob("*.png"))
    assert pngs, "no interpretation figure written"

    clip = next((data / "audio").glob("*-103.wav"))
    result = run_script(
        "interpret.py",
        [f"--model_folder={out}", f"--audio={clip}", f"--output_folder={tmp_path / 'interp'}"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(next((tmp_path / "interp").glob("*.json")).read_text())
    top_names = {entry["class"] for entry in summary["top"]}
    assert top_names == {"doorbell", "cat_purr", "kettle"}
