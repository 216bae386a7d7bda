"""Real sound end to end: a tiny FocalNet trained on the real ESC-10 recordings of ../shared/data
(the from-scratch recipe, shrunk), and interpretations of real clips.

Under ``CI=true`` a missing ../shared/data fails these tests (see ``conftest.require_shared_data``).
"""

import json

import pytest
import soundfile as sf
from recipe_runs import run_script

from data_prep.esc50 import read_metadata

ESC10_CLASSES = {
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
}
EPOCHS = 15


@pytest.fixture(scope="module")
def esc10_run(real_esc10, tmp_path_factory):
    """``hparams/esc10_focalnet.yaml`` with a narrower model for fewer epochs, folds 1-3 / 4 / 5."""
    root = tmp_path_factory.mktemp("esc10")
    out = root / "run"
    args = [
        "hparams/esc10_focalnet.yaml",
        f"--data_folder={real_esc10}",
        f"--output_folder={out}",
        f"--resample_cache={root / 'cache'}",
        "--backbone_config={embed_dim: 16, depths: [1, 1, 1, 1], use_conv_embed: True}",
        f"--number_of_epochs={EPOCHS}",
        "--warmup_epochs=2",
        "--n_interpretations=3",
    ]
    result = run_script("train_classifier.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_a_tiny_model_learns_real_sound(esc10_run):
    metrics = json.loads((esc10_run / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 80  # fold 5 of ESC-10
    assert metrics["acc"] >= 0.30, metrics["acc"]  # 3x chance (0.10)
    assert {entry["class_name"] for entry in metrics["labels"]} == ESC10_CLASSES
    assert [entry["label"] for entry in metrics["labels"]] == list(range(10))
    card = json.loads((esc10_run / "model.json").read_text())
    assert card["subset"] == "esc10" and card["n_classes"] == 10
    assert card["image_antialias"] is True and card["image_normalisation"] == [0.28, 0.42]


def test_interpretations_of_real_clips(esc10_run, real_esc10, tmp_path):
    # the run's own interpretations: real test clips, named by their real classes
    wavs = sorted((esc10_run / "interpretations").glob("*_interpretation.wav"))
    assert len(wavs) == 3
    rows = read_metadata(real_esc10)
    test_ids = {row["filename"].rsplit(".", 1)[0] for row in rows if row["fold"] == 5}
    for wav in wavs:
        assert wav.name.replace("_interpretation.wav", "") in test_ids
        audio, rate = sf.read(wav)
        assert rate == 16000 and len(audio) == 80000 and abs(audio).max() > 0
    # interpret.py on a real Ogg Vorbis file of 44.1 kHz
    clip = real_esc10 / "audio" / "5-200334-A-1.ogg"  # a rooster of the test fold
    result = run_script(
        "interpret.py",
        [f"--model_folder={esc10_run}", f"--audio={clip}", f"--output_folder={tmp_path}"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "5-200334-A-1_by_design.json").read_text())
    assert summary["input_sample_rate"] == 44100
    assert summary["top"][0]["class"] in ESC10_CLASSES
    assert summary["mask_share"] == pytest.approx(0.1, abs=1e-3)
    audio, rate = sf.read(tmp_path / "5-200334-A-1_by_design.wav")
    assert rate == 16000 and abs(len(audio) / rate - summary["duration_s"]) < 1e-3
    assert (tmp_path / "5-200334-A-1_by_design.png").stat().st_size > 10_000
