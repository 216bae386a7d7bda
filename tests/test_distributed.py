"""Two processes under torchrun (gloo, CPU): the classifier recipe with SpeechBrain's DDP."""

import json
import os
import subprocess
import sys

import pytest
from recipe_runs import REPO_ROOT, tiny_args


@pytest.mark.parametrize("backbone", ["focalnet", "vit"])
def test_two_process_run_scores_every_test_clip_once(backbone, tiny_data, tmp_path):
    out = tmp_path / "ddp"
    # 18 training clips, 9 per process, batches of 3 (a batch of 1 breaks the head's BatchNorm).
    extra = ["--pretrained=False", "--distributed_backend=gloo", "--batch_size=3"]
    args = tiny_args(backbone, backbone, tiny_data, out, *extra)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "train_classifier.py",
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    # Fold 5 holds 6 clips, 3 per process: the reduced metrics count each exactly once.
    assert metrics["n_clips"] == 6
    assert sum(map(sum, metrics["confusion_matrix"])) == 6
    assert sorted(metrics["per_class_acc"]) == ["class_00", "class_01", "class_02"]
    # Written once, by the main process: one checkpoint, one log line per epoch.
    assert len(list((out / "save").glob("CKPT+*"))) == 1
    log = (out / "train_log.txt").read_text().splitlines()
    assert len(log) == 2, log
    assert log[0].startswith("epoch: 1,") and log[1].startswith("Epoch loaded: 1 - test acc")
