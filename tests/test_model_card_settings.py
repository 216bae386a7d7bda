"""Inference reads what the run saw from model.json; method names are the registry's."""

import json
import shutil

import pytest
import torch
from recipe_runs import run_script

from recipes.inference import AudioInterpreter, card_settings
from recipes.runs import read_model_card


def test_a_run_records_its_stft_and_score_scale(classifier_runs):
    card = read_model_card(classifier_runs["focalnet"])
    assert card["sample_rate"] == 16000 and card["clip_seconds"] == 5.0
    assert card["stft"] == {"n_fft": 1024, "win_length": 23.2199, "hop_length": 11.6099}
    assert card["score_scale"] == 30.0  # hparams/focalnet.yaml loss_fn.scale
    assert card["method"] == "by_design"


def _copy_with_card(run, tmp_path, **changes):
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    card = read_model_card(folder)
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_inference_follows_the_cards_sample_rate_stft_and_scale(classifier_runs, tmp_path):
    # A card that says 8 kHz, 2 s clips, n_fft 256, hop 16 ms, scale 10: the same weights
    # (the image view resizes any spectrogram) now see that front end.
    folder = _copy_with_card(
        classifier_runs["focalnet"],
        tmp_path,
        sample_rate=8000,
        clip_seconds=2.0,
        stft={"n_fft": 256, "win_length": 32.0, "hop_length": 16.0},
        score_scale=10.0,
    )
    model = AudioInterpreter.from_run(folder)
    assert (model.sample_rate, model.clip_samples, model.features_hop()) == (8000, 16000, 128)
    result = model.interpret_waveform(torch.randn(44100 * 3), 44100)  # 3 s at 44.1 kHz
    assert result["n_windows"] == 2  # 2 s windows
    # a full 2 s window has 16000 // 128 + 1 = 126 frames, the last 1 s one 8000 // 128 + 1 = 63;
    # a 256-point FFT has 129 bins
    assert result["log_spec"].shape == (126 + 63, 129)
    assert result["interpretation_wave"].shape == (24000,)  # 3 s at the card's 8 kHz
    assert result["windows"][1]["start_s"] == 2.0 and result["windows"][1]["end_s"] == 3.0
    scores = torch.tensor([[0.5, 0.0]])
    expected = torch.softmax(10.0 * scores, dim=-1)
    assert torch.allclose(model.probabilities(scores), expected)


def test_a_card_without_the_keys_gets_the_papers_values(classifier_runs, tmp_path):
    folder = _copy_with_card(
        classifier_runs["focalnet"],
        tmp_path,
        stft=None,
        score_scale=None,
        sample_rate=None,
        clip_seconds=None,
    )
    model = AudioInterpreter.from_run(folder)
    assert (model.sample_rate, model.clip_samples, model.features_hop()) == (16000, 80000, 186)
    assert model.score_scale == 30.0
    assert card_settings(read_model_card(folder))["stft"]["n_fft"] == 1024


def test_an_unknown_method_is_one_line_naming_the_choices(classifier_runs, tiny_data, tmp_path):
    from recipes.runs import RunFolderError

    with pytest.raises(RunFolderError, match="unknown method 'focal': choose among by_design"):
        AudioInterpreter.from_run(classifier_runs["focalnet"], method="focal")  # the old alias
    path = next((tiny_data / "audio").glob("5-*.wav"))
    args = [f"--model_folder={classifier_runs['focalnet']}", f"--audio={path}"]
    result = run_script("interpret.py", [*args, "--methods", "focal"])
    assert result.returncode != 0 and "invalid choice: 'focal'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_script("interpret.py", [*args, "--methods", "piq"])  # no PIQ run given
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"interpret.py: --methods piq needs a train_piq.py run on {classifier_runs['focalnet']}: "
        "give it with --runs"
    ]
