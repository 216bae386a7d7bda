"""Bad input refused up front with one line naming the file or key: audio with non-finite
samples, numeric settings out of range, a run folder that holds another model."""

import shutil

import numpy as np
import pytest
import soundfile as sf
from recipe_runs import run_script, tiny_args

from data_prep.audio import AudioReadError, ResampleCache, load_clip, read_audio
from recipes.cli import SETTING_RANGES, check_settings


def refused(result, *needles):
    """The script failed with a one-line message holding every needle, without a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert all(needle in lines[-1] for needle in needles), lines[-3:]
    return lines[-1]


def _snapshot(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {
        path.relative_to(folder): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


# ------------------------------------------------------------------ audio ---
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_audio_with_non_finite_samples_is_refused_naming_the_file(tmp_path, bad):
    data = np.zeros((16000, 2), dtype=np.float32)
    data[100, 1] = bad
    path = tmp_path / "clip.wav"
    sf.write(path, data, 16000, subtype="FLOAT")  # a float WAV can hold them
    cache = ResampleCache(tmp_path / "cache")
    for read in (read_audio, load_clip, lambda p: load_clip(p, cache=cache)):
        with pytest.raises(AudioReadError) as error:
            read(path)
        assert str(error.value) == (
            f"Audio file {path} has non-finite samples (1 NaN or infinite): replace or remove "
            "the file."
        )
    assert list((tmp_path / "cache").iterdir()) == []  # nothing cached


def test_a_nan_clip_stops_training_with_one_line(tiny_data, tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_data, data)
    clip = sorted((data / "audio").glob("1-*.wav"))[0]  # fold 1: a training clip
    info = sf.info(clip)
    sf.write(clip, np.full(info.frames, np.nan, np.float32), info.samplerate, subtype="FLOAT")
    args = tiny_args("focalnet", "focalnet", data, out, "--pretrained=False")
    refused(run_script("train_classifier.py", args), str(clip), "has non-finite samples")
    assert not any((out / "save").glob("CKPT+*"))  # no checkpoint, no test results
    assert not (out / "test_metrics.json").exists()


# --------------------------------------------------------------- settings ---
@pytest.mark.parametrize(
    "override, message",
    [
        ("--batch_size=0", "batch_size is 0: give an integer >= 1 (clips per training batch)"),
        ("--number_of_epochs=-1", "number_of_epochs is -1: give an integer >= 1 (training epochs)"),
        ("--lr=0", "lr is 0: give a number > 0 (the learning rate)"),
        ("--batch_size=2.5", "batch_size is 2.5: give an integer >= 1 (clips per training batch)"),
    ],
)
def test_numeric_settings_out_of_range_are_refused_up_front(tiny_data, tmp_path, override, message):
    out = tmp_path / "run"
    args = tiny_args("focalnet", "focalnet", tiny_data, out, "--pretrained=False", override)
    assert refused(run_script("train_classifier.py", args)) == f"train_classifier.py: {message}"
    assert not out.exists()


def test_warmup_longer_than_training_is_refused(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = tiny_args("esc10_focalnet", "focalnet", tiny_data, out, "--subset=esc50")
    line = refused(run_script("train_classifier.py", args))
    assert line == (
        "train_classifier.py: warmup_epochs is 5 but number_of_epochs is 1: give a "
        "--warmup_epochs below 1 (e.g. --warmup_epochs=0)"
    )
    assert not out.exists()


YAMLS = ["focalnet", "esc10_vit", "piq_focalnet", "lmac_vit"]
REQUIRED = {"data_folder": "x", "classifier_folder": "y"}


@pytest.mark.parametrize("name", YAMLS)
def test_every_range_checked_key_of_the_recipes_is_checked(name):
    hparams_file = f"hparams/{name}.yaml"
    base = {key: value for key, value in REQUIRED.items() if key in open(hparams_file).read()}
    assert check_settings(hparams_file, base) is None  # the shipped values, !refs resolved
    checked = [key for key in SETTING_RANGES if f"\n{key}:" in open(hparams_file).read()]
    assert "batch_size" in checked and "number_of_epochs" in checked
    for key in checked:
        integer, lowest, lowest_allowed, highest, _ = SETTING_RANGES[key]
        too_low = lowest - 1 if lowest_allowed else lowest
        for bad in (too_low, "many", True, *([highest + 1] if highest is not None else [])):
            problem = check_settings(hparams_file, {**base, key: bad})
            assert problem is not None and problem.startswith(f"{key} is {bad}: give "), problem
            assert "\n" not in problem


def test_numbers_the_command_line_reads_as_text_are_accepted():
    # yaml.safe_load("1e-3") is the string '1e-3': still a learning rate
    assert check_settings("hparams/focalnet.yaml", {"data_folder": "x", "lr": "1e-3"}) is None


# ------------------------------------------------------------- run folder ---
def test_a_run_folder_of_another_model_is_refused_untouched(classifier_runs, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(classifier_runs["focalnet"], run)
    before = _snapshot(run)
    args = tiny_args("focalnet", "focalnet", tiny_data, run, "--pretrained=False")
    args = [arg for arg in args if not arg.startswith("--backbone_config")]
    args.append("--backbone_config={embed_dim: 16, depths: [1, 1, 1, 1]}")
    line = refused(run_script("train_classifier.py", args))
    assert line == (
        f"train_classifier.py: {run} holds a run of another model (model.json differs in "
        "backbone_config.embed_dim: the run has 8, this command 16): give another "
        "--output_folder for this model, or the run's settings to continue it "
        "(--backbone_config={embed_dim: 8}); nothing was written"
    )
    assert _snapshot(run) == before
    line = refused(run_script("train_classifier.py", [*args, "--n_classes=3", "--head_neurons=8"]))
    assert "backbone_config.embed_dim: the run has 8, this command 16; head_neurons: " in line
    assert "(--backbone_config={embed_dim: 8} --head_neurons=192)" in line
    assert _snapshot(run) == before
