"""CNN14 on SpeechBrain's Cnn14: parameter count, layouts, its L-MAC decoder, no by-design map,
its recipes end to end, and SpeechBrain's released CNN14 layout."""

import json

import pytest
import torch
from recipe_runs import run_script, tiny_args

from interpreters.l2i import L2IInterpreter, l2i_stages
from interpreters.lmac import build_decoder, decoder_for, stage_channels
from interpreters.methods import method_maps
from interpreters.piq import PIQInterpreter, piq_grid
from recipes.backbones import BACKBONES, TINY_CNN14, build
from recipes.loading import load_model, resolve_methods
from recipes.models import AudioClassifier, build_head, count_parameters
from recipes.runs import RunFolderError, check_classifier_folder


def test_full_size_cnn14_has_speechbrains_parameter_count():
    backbone = build("cnn14", pretrained=False)  # 80 mels, emb 2048
    assert count_parameters(backbone) == 75_477_472
    assert backbone.embedding_size == 2048 and not BACKBONES["cnn14"].has_by_design_map
    assert not list(backbone.fbank.state_dict())  # checkpoints hold Cnn14's weights only


def test_tiny_cnn14_layouts_methods_and_lmac_decoder():
    torch.manual_seed(0)
    backbone = build("cnn14", pretrained=False, config_overrides=TINY_CNN14).eval()
    head = build_head(backbone.embedding_size, 3, kind="linear")
    model = AudioClassifier(backbone, head).eval()
    log_spec = torch.rand(2, 431, 513)
    out = model(log_spec, with_map=True, with_stages=True)
    assert out["scores"].shape == (2, 3) and out["by_design_map"] is None
    assert [s.shape[1] for s in out["stages"]] == [64, 32, 16, 8]
    # the view: log1p of the mel filterbank of the magnitude
    expected = torch.log1p(backbone.fbank(torch.expm1(log_spec)))
    assert torch.allclose(backbone.image(log_spec), expected)
    _, maps = method_maps(model, log_spec, ["gradcam", "saliency", "energy"])
    assert all(m.shape == (2, 431, 513) and torch.isfinite(m).all() for m in maps.values())
    decoder = decoder_for(backbone)
    assert decoder.card() == {"kind": "cnn14psi_stft", "dim": 64}
    logits = decoder(out["stages"], (431, 513))
    mask = torch.sigmoid(logits)
    assert mask.shape == (2, 431, 513) and torch.equal(mask[:, 425:], torch.zeros(2, 6, 513))
    assert type(build_decoder(decoder.card())) is type(decoder)


def test_cnn14_recipes_end_to_end(cnn14_run, synthetic_esc50, tmp_path):
    """train_classifier.py (Grad-CAM at its test stage), by_design refused, train_lmac.py with
    the authors' CNN14 decoder, PIQ on CNN14's 13 x 2 grid, L2I on CNN14's blocks."""
    card = json.loads((cnn14_run / "model.json").read_text())
    assert card["backbone"] == "cnn14" and card["head"] == "linear"
    assert card["score_scale"] == 1.0
    metrics = json.loads((cnn14_run / "test_metrics.json").read_text())
    assert metrics["method"] == "gradcam" and metrics["n_clips"] == 3
    assert metrics["score_scale"] == 1.0
    with pytest.raises(RunFolderError, match="^--methods by_design: CNN14 has no by-design map"):
        resolve_methods(cnn14_run, ["by_design"])

    # A post-hoc YAML at the cosine heads' score scale is refused on this run
    with pytest.raises(RunFolderError, match="^score_scale: the classifier in .* at 1.0"):
        check_classifier_folder({"classifier_folder": cnn14_run, "score_scale": 30.0})

    data, _ = synthetic_esc50
    out = tmp_path / "lmac"
    args = tiny_args("lmac_cnn14", "cnn14", data, out, f"--classifier_folder={cnn14_run}")
    result = run_script("train_lmac.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    lmac_card = json.loads((out / "model.json").read_text())
    assert lmac_card["decoder"] == {"kind": "cnn14psi_stft", "dim": 64}
    lmac_metrics = json.loads((out / "test_metrics.json").read_text())
    assert lmac_metrics["method"] == "lmac" and lmac_metrics["score_scale"] == 1.0

    # The L-MAC run and PIQ (CNN14's 13 x 2 grid resized to PIQ's 14 x 14) through the registry.
    model, trained, methods = resolve_methods(out, ["lmac", "gradcam"])
    trained["piq"] = PIQInterpreter(64, 3, codebook_size=12, width=8).eval()
    # L2I's Psi reads CNN14's blocks 6, 5, 4 on their own grids (no resizing)
    trained["l2i"] = L2IInterpreter(stage_channels(model.classifier.backbone), 3, 4).eval()
    log_spec = torch.rand(2, 431, 513)
    out = model.classifier(log_spec, with_stages=True)
    grid, stages = out["grid"], out["stages"]
    assert grid.shape == (2, 64, 13, 2) and piq_grid(grid).shape == (2, 64, 14, 14)
    assert all(a is b for a, b in zip(l2i_stages(stages), stages[:3], strict=True))
    names = ["lmac", "gradcam", "piq", "l2i"]
    scores, maps = method_maps(model.classifier, log_spec, names, trained)
    assert scores.shape == (2, 3)
    for name, values in maps.items():
        assert values.shape == (2, 431, 513), name
    assert torch.equal(maps["lmac"][:, 425:], torch.zeros(2, 6, 513))  # CNN14PSI_stft's 425


def test_released_cnn14_loads_with_its_label_order(tmp_path):
    """SpeechBrain's speechbrain/cnn14-esc50 layout (random weights, a permuted label order):
    class names follow label_encoder.txt and the scores are those of SpeechBrain's own modules."""
    from speechbrain.processing.features import Filterbank

    torch.manual_seed(0)
    cnn14 = build("cnn14", pretrained=False, config_overrides=TINY_CNN14).backbone.eval()
    linear = torch.nn.Linear(64, 3)
    folder = tmp_path / "cnn14-esc50"
    folder.mkdir()
    torch.save(cnn14.state_dict(), folder / "embedding_model.ckpt")
    torch.save(linear.state_dict(), folder / "classifier.ckpt")
    # SpeechBrain's CategoricalEncoder file, in a label order that is not ESC-50's targets'
    order = ["class_02", "class_00", "class_01"]
    lines = [f"'{name}' => {index}" for index, name in enumerate(order)]
    (folder / "label_encoder.txt").write_text(
        "\n".join([*lines, "================", "'starting_index' => 0"]) + "\n"
    )
    model, trained = load_model(folder, backbone_config=TINY_CNN14)
    assert model.class_names == order and not trained
    assert model.backbone == "cnn14" and model.score_scale == 1.0
    assert isinstance(model.classifier.classifier, torch.nn.Linear)
    assert model.input_normalisation == "signed_max"

    log_spec = torch.rand(2, 431, 513)
    fbank = Filterbank(n_mels=80, n_fft=1024, sample_rate=16000, log_mel=False)
    embedding, _ = cnn14(torch.log1p(fbank(torch.expm1(log_spec))))
    expected = linear(embedding).squeeze(1)
    assert torch.allclose(model.classify(log_spec), expected, atol=1e-5)
    _, _, methods = resolve_methods(folder, backbone_config=TINY_CNN14)
    assert methods == ["gradcam"]
