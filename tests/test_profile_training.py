"""``benchmarks/profile_training.py``: the real recipe run with its training steps timed."""

import json

import pytest
from recipe_runs import run_script, tiny_args

# The paper's recipe, and a from-scratch one (its loss is ``compute_cost``, whose scale is the
# test stage's score_scale: timing it must not hide it).
RECIPES = {
    "focalnet": ["--pretrained=False"],
    "esc10_focalnet": ["--subset=esc50", "--warmup_epochs=0", "--precision=fp32"],
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_profile_accounts_for_every_epoch_and_clip(recipe, tiny_data, tmp_path):
    output = tmp_path / "run"
    profile = tmp_path / "profile.json"
    args = tiny_args(
        recipe, "focalnet", tiny_data, output, *RECIPES[recipe], "--number_of_epochs=2"
    )
    result = run_script(
        "benchmarks/profile_training.py",
        [*args, f"--json={profile}", "--compare_formats", "--pairs=2"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(profile.read_text())

    # The run is the recipe's own: it tested its model and wrote its results.
    assert (output / "test_metrics.json").is_file()
    n_train = len(json.loads((output / "manifests" / "train.json").read_text()))
    assert [epoch["train_clips"] for epoch in figures["epochs"]] == [n_train, n_train]
    phases = [phase for phase in figures["train_phases"] if phase != "other"]
    assert {"load", "features", "backbone", "backward", "optimizer"} <= set(phases)
    for epoch in figures["epochs"]:
        for phase in ("load", "features", "image", "backbone", "head", "loss", "backward"):
            assert epoch[phase] > 0, phase
        assert epoch["optimizer"] > 0
        measured = sum(epoch.get(phase, 0.0) for phase in phases)
        assert measured <= epoch["train_stage"]
        assert abs(measured + epoch["other"] - epoch["train_stage"]) < 1e-6
        assert epoch["epoch"] >= epoch["train_stage"] + epoch["valid_stage"]
        assert epoch["checkpoint"] > 0
    steady = figures["steady"]  # the epochs after the first
    assert steady["train_stage"] == figures["epochs"][1]["train_stage"]
    assert figures["train_clips_per_s"] == n_train / steady["train_stage"]
    assert figures["test_seconds"] > 0
    assert "training clips/s (training stage)" in result.stdout

    # The four forms of a training step, each timed.
    assert set(figures["formats"]) == {"fp32", "channels_last", "bf16", "bf16+channels_last"}
    for row in figures["formats"].values():
        assert row["seconds_per_step"] > 0
        assert row["clips_per_s"] > 0
