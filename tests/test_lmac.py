"""L-MAC on FocalNet and ViT: the decoder, the loss, the recipe end to end, and inference."""

import json
import math
import re

import pytest
import torch
from recipe_runs import run_script

from interpreters.lmac import LMACDecoder, lmac_loss, stage_channels
from recipes.inference import AudioInterpreter
from recipes.models import TINY_FOCALNET, TINY_VIT, build_embedder, count_parameters
from recipes.runs import read_model_card


def _decoder_parameters(channels, width):
    """The decoder's size by hand: 1x1 inputs, 4x4 transposed and 3x3 convolutions, 1x1 out."""
    steps = len(channels) - 1
    inputs = sum(c * width + width for c in channels)
    return (
        inputs
        + steps * (16 * width * width + width)
        + steps * (9 * width * width + width)
        + (width + 1)
    )


@pytest.mark.parametrize(
    "backbone, channels, expected",
    [
        ("focalnet", [1024, 512, 256, 128], 1_475_969),
        ("vit", [768, 768, 768, 768], 1_623_425),
    ],
)
def test_paper_size_decoder_inputs_and_parameter_count(backbone, channels, expected):
    """FocalNet-base: the 7, 14, 28, 56 grids; ViT-base: layers 12, 9, 6, 3; width 128."""
    embedder = build_embedder(backbone, pretrained=False)
    assert stage_channels(embedder) == channels
    decoder = LMACDecoder(channels, width=128)
    assert count_parameters(decoder) == _decoder_parameters(channels, 128) == expected


@pytest.mark.parametrize("backbone, config", [("focalnet", TINY_FOCALNET), ("vit", TINY_VIT)])
def test_stages_are_coarsest_first_and_the_mask_covers_the_spectrogram(backbone, config):
    embedder = build_embedder(backbone, pretrained=False, config_overrides=config).eval()
    image = torch.randn(2, 3, 224, 224)
    out = embedder(image, with_stages=True)
    sides = [stage.shape[-1] for stage in out["stages"]]
    assert sides == sorted(sides) and all(stage.shape[0] == 2 for stage in out["stages"])
    if backbone == "focalnet":
        assert sides == [7, 14, 28, 56]
        assert torch.equal(out["stages"][0], out["grid"])  # the last stage's map
    else:
        assert set(sides) == {14}  # patches of the chosen layers, CLS dropped
        # the last layer's tokens, before the final LayerNorm that gives the feature grid
        tokens = out["stages"][0].flatten(2).transpose(1, 2)
        grid_tokens = out["grid"].flatten(2).transpose(1, 2)
        assert torch.allclose(embedder.backbone.layernorm(tokens), grid_tokens, atol=1e-5)
    # The embedding does not change when the stages are asked for.
    assert torch.allclose(embedder(image)["embedding"], out["embedding"])
    decoder = LMACDecoder(stage_channels(embedder), width=8)
    logits = decoder(out["stages"], (431, 513))
    assert logits.shape == (2, 431, 513)
    mask = torch.sigmoid(logits.detach())
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1


def test_loss_terms_known_answer_and_gradients_reach_only_the_decoder():
    torch.manual_seed(0)
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET).eval()
    embedder.requires_grad_(False)
    decoder = LMACDecoder(stage_channels(embedder), width=8)
    log_spec = torch.rand(2, 431, 513)
    out = embedder(embedder.image(log_spec), with_stages=True)
    mask = torch.sigmoid(decoder(out["stages"], (431, 513)))
    weight = torch.nn.functional.normalize(torch.randn(3, embedder.embedding_size), dim=1)

    def scores(x):
        embedding = embedder(embedder.image(x))["embedding"]
        return torch.nn.functional.normalize(embedding, dim=1) @ weight.T

    target = scores(log_spec).argmax(dim=1)
    s_in, s_out = scores(mask * log_spec), scores((1 - mask) * log_spec)
    losses = lmac_loss(s_in, s_out, mask, target, score_scale=30.0)
    ce = torch.nn.functional.cross_entropy
    expected = (
        4 * ce(30 * s_in, target)
        - 0.2 * ce(30 * s_out, target)
        + 0.4 * mask.mean(dim=(1, 2)).mean()
    )
    assert torch.allclose(losses["total"], expected)
    # The L1 term is a per-clip mean averaged over clips: doubling the batch leaves it unchanged.
    doubled = lmac_loss(
        torch.cat([s_in, s_in]),
        torch.cat([s_out, s_out]),
        torch.cat([mask, mask]),
        torch.cat([target, target]),
        score_scale=30.0,
    )
    assert torch.allclose(doubled["l1"], losses["l1"])
    losses["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())
    assert all(p.grad is None for p in embedder.parameters())


@pytest.mark.parametrize("backbone", ["focalnet", "vit"])
def test_lmac_recipe_end_to_end(backbone, lmac_runs, classifier_runs):
    out = lmac_runs[backbone]
    metrics = json.loads((out / "test_metrics.json").read_text())
    classifier = json.loads((classifier_runs[backbone] / "test_metrics.json").read_text())
    assert metrics["method"] == "lmac" and metrics["quantile"] is None
    assert metrics["backbone"] == backbone
    assert metrics["acc"] == classifier["acc"]  # the classifier is frozen
    assert metrics["classifier_n_params"] == classifier["n_params"]
    card = read_model_card(out)
    assert card["method"] == "lmac" and card["decoder"]["width"] == 8
    assert metrics["n_params"] == _decoder_parameters(card["decoder"]["in_channels"], 8)
    for key in ("fid_i", "fa", "fa_mask_in", "ai", "ad", "ag", "sps", "comp"):
        assert math.isfinite(metrics[key]), key
    assert 0 <= metrics["ai"] <= 100 and 0 <= metrics["sps"] < 1
    assert len(list((out / "interpretations").glob("*.wav"))) == 6  # 2 clips x 3 sounds
    # The validation loss really is logged, and the test used the epoch with the lowest one.
    log = (out / "train_log.txt").read_text()
    losses = [float(x) for x in re.findall(r"valid loss: ([0-9.e+-]+)", log)]
    assert len(losses) == 2, log
    assert any(path.name.startswith("CKPT+") for path in (out / "save").iterdir())
    best_epoch = 1 + losses.index(min(losses))
    assert f"Epoch loaded: {best_epoch}" in log


def test_an_lmac_run_interprets_files(lmac_runs, tiny_data, tmp_path):
    folder = lmac_runs["focalnet"]
    model = AudioInterpreter.from_run(folder)
    assert model.method == "lmac" and model.effective_quantile() is None
    path = next((tiny_data / "audio").glob("5-*.wav"))
    result = run_script(
        "interpret.py",
        [f"--model_folder={folder}", f"--audio={path}", f"--output_folder={tmp_path}"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / f"{path.stem}_lmac.json").read_text())
    assert summary["method"] == "lmac" and 0 < summary["mask_share"] < 1
    assert AudioInterpreter.from_run(folder, method="by_design").method == "by_design"


def test_quickstart_lmac_step(quickstart_run, tmp_path):
    """The README's quickstart L-MAC step on the quickstart classifier, exactly as written."""
    data, classifier_folder = quickstart_run
    out = tmp_path / "quickstart-lmac"
    args = [
        "hparams/lmac_focalnet.yaml",
        f"--data_folder={data}",
        f"--classifier_folder={classifier_folder}",
        "--overrides_file=hparams/quickstart_lmac.yaml",
        f"--output_folder={out}",
    ]
    result = run_script("train_lmac.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    classifier = json.loads((classifier_folder / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 80 and metrics["acc"] == classifier["acc"]
    log = (out / "train_log.txt").read_text()
    losses = [float(x) for x in re.findall(r"train loss: ([0-9.e+-]+)", log)]
    assert len(losses) == 3 and losses[-1] < losses[0], losses  # the decoder learns
