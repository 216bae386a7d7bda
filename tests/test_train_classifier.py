"""The classifier recipe end to end with tiny models on synthetic ESC-50 (CPU, offline)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from recipe_runs import run_script, tiny_args

REPO = Path(__file__).resolve().parents[1]


def _args(backbone, data_folder, output_folder, *extra):
    return tiny_args(backbone, backbone, data_folder, output_folder, "--pretrained=False", *extra)


def _run(args, timeout=1800):
    return run_script("train_classifier.py", args, timeout)


@pytest.mark.parametrize("backbone", ["focalnet", "vit"])
def test_train_and_evaluate_end_to_end(backbone, tiny_data, tmp_path):
    out = tmp_path / "run"
    result = _run(_args(backbone, tiny_data, out, "--quantile=0.8"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 6  # fold 5: 3 classes x 2 clips
    assert metrics["quantile"] == 0.8 and metrics["backbone"] == backbone
    for key in ("acc", "fid_i", "fa", "fa_mask_in"):
        assert isinstance(metrics[key], float) and abs(metrics[key]) <= 1
    assert set(metrics["per_class_acc"]) == {"class_00", "class_01", "class_02"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 6
    assert metrics["n_params"] > 0
    for name in ("train_log.txt", "hyperparams.yaml", "confusion_matrix.png", "model.json"):
        assert (out / name).is_file(), name
    assert (out / "train_classifier.py").is_file() and not (out / "cli.py").exists()
    card = json.loads((out / "model.json").read_text())
    assert card["backbone"] == backbone and card["n_classes"] == 3
    assert card["class_names"] == ["class_00", "class_01", "class_02"]
    assert any((out / "save").glob("CKPT+*"))
    pngs = sorted((out / "interpretations").glob("*.png"))
    wavs = sorted((out / "interpretations").glob("*_interpretation.wav"))
    assert len(pngs) == len(wavs) == 2


def _final_state(out):
    """Test metrics and the weights of the checkpoint kept as best."""
    metrics = json.loads((out / "test_metrics.json").read_text())
    ckpts = sorted((out / "save").glob("CKPT+*"))
    weights = {c.name: torch.load(c / "embedding_model.ckpt") for c in ckpts}
    return metrics, weights


def test_killed_run_resumes_to_the_same_result(tiny_data, tmp_path):
    """kill -9 once a checkpoint is complete, resume: same result as an uninterrupted run.

    The kill may land while a later checkpoint is being written; that one must then be ignored.
    """
    epochs = "--number_of_epochs=3"
    reference = _run(_args("focalnet", tiny_data, tmp_path / "ref", epochs))
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    command = [sys.executable, "train_classifier.py", *_args("focalnet", tiny_data, out, epochs)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not any((out / "save").glob("CKPT+*/CKPT.yaml")) and time.time() < deadline:
        assert process.poll() is None, "run ended before its first checkpoint"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "test_metrics.json").exists()

    resumed = _run(_args("focalnet", tiny_data, out, epochs))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Loading a checkpoint" in (out / "log.txt").read_text()
    ref_metrics, ref_weights = _final_state(tmp_path / "ref")
    metrics, weights = _final_state(out)
    assert metrics == ref_metrics
    last_ref, last = sorted(ref_weights)[-1], sorted(weights)[-1]
    for name, tensor in ref_weights[last_ref].items():
        assert torch.equal(tensor, weights[last][name]), name


def test_quickstart_learns(quickstart_run):
    """The README's offline quickstart: test accuracy at least 5x chance (10 classes)."""
    _, out = quickstart_run
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 80
    assert metrics["acc"] >= 5 * (1 / 10), metrics["acc"]
    assert len(list((out / "interpretations").glob("*.png"))) == 4


def test_bf16_mixed_precision_run_on_cpu(tiny_data, tmp_path):
    """--precision=bf16 --eval_precision=bf16 cover training and the test stage: the scores, the
    by-design map and the masked forwards of FID-I / FA really run in bfloat16 (the quantile
    mask is float32). --precision alone leaves the test stage in fp32 (tests/test_precision.py)."""
    out = tmp_path / "bf16"
    result = _run(_args("focalnet", tiny_data, out, "--precision=bf16", "--eval_precision=bf16"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 6
    for key in ("fid_i", "fa", "fa_mask_in"):
        assert abs(metrics[key]) <= 1, key
    assert metrics["precision"] == "bf16" and metrics["eval_precision"] == "bf16"
    assert metrics["eval_dtypes"] == {
        "mask": "float32",
        "masked_scores": "bfloat16",
        "raw_map": "bfloat16",
        "scores": "bfloat16",
    }
    # --eval_precision still wins: the same checkpoint re-evaluated in fp32.
    result = _run(
        _args(
            "focalnet", tiny_data, out, "--precision=bf16", "--eval_precision=fp32", "--test_only"
        )
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["eval_precision"] == "fp32"
    assert set(metrics["eval_dtypes"].values()) == {"float32"}
