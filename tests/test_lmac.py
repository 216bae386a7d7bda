"""L-MAC on FocalNet and ViT: the decoder, the loss, the schedule, the recipe end to end, and
inference."""

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from recipe_runs import run_script
from speechbrain.nnet.schedulers import ReduceLROnPlateau

from interpreters.lmac import L1_WEIGHT, LMACDecoder, lmac_loss, stage_channels
from recipes.inference import AudioInterpreter
from recipes.lmac import LMACBrain
from recipes.models import TINY_FOCALNET, TINY_VIT, build_embedder, count_parameters
from recipes.runs import read_model_card

REPO = Path(__file__).resolve().parents[1]
LMAC_YAMLS = ("hparams/lmac_focalnet.yaml", "hparams/lmac_vit.yaml")


def _yaml_value(path, key):
    """A top-level scalar of a recipe YAML, read as text (no objects built)."""
    text = (REPO / path).read_text()
    return float(re.search(rf"^{key}: ([^#\n]+)", text, re.MULTILINE).group(1))


def _load_lmac_yaml(path, tmp_path):
    """The recipe YAML's objects with a tiny FocalNet and folders under ``tmp_path``."""
    overrides = {
        "data_folder": str(tmp_path / "data"),
        "classifier_folder": str(tmp_path / "classifier"),
        "output_folder": str(tmp_path / "out"),
        "backbone": "focalnet",
        "backbone_config": dict(TINY_FOCALNET),
        "n_classes": 3,
    }
    with open(REPO / path) as handle:
        return load_hyperpyyaml(handle, overrides)


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
    assert torch.equal(embedder(image)["embedding"], out["embedding"])
    decoder = LMACDecoder(stage_channels(embedder), width=8)
    logits = decoder(out["stages"], (431, 513))
    assert logits.shape == (2, 431, 513)
    mask = torch.sigmoid(logits.detach())
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1


def test_focalnet_stages_are_each_stage_output_before_downsampling():
    """Stage k is the output of stage k's last layer, read independently by a hook on that layer,
    on the stage's own grid; not the patch embedding, not the next stage's input."""
    torch.manual_seed(0)
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET).eval()
    encoder_stages = embedder.backbone.focalnet.encoder.stages
    last_layers = {}
    hooks = [
        stage.layers[-1].register_forward_hook(
            lambda module, args, output, k=k: last_layers.__setitem__(k, output)
        )
        for k, stage in enumerate(encoder_stages)
    ]
    embedded = {}
    hooks.append(
        embedder.backbone.focalnet.embeddings.register_forward_hook(
            lambda module, args, output: embedded.__setitem__("out", output[0])
        )
    )
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = embedder(image, with_stages=True)
    for hook in hooks:
        hook.remove()
    stages = out["stages"][::-1]  # fine to coarse: stage 0 first
    width = TINY_FOCALNET["embed_dim"]
    assert [tuple(s.shape[1:]) for s in stages] == [
        (width * 2**k, 56 // 2**k, 56 // 2**k) for k in range(4)
    ]
    for k, stage in enumerate(stages):
        side = 56 // 2**k
        expected = last_layers[k].transpose(1, 2).reshape(2, -1, side, side)  # [B, H*W, C]
        assert torch.equal(stage, expected), k
    assert torch.equal(out["stages"][0], out["grid"])
    # The old reading (transformers' hidden states) gave the patch embedding as the 56 x 56 stage.
    patch_embedding = embedded["out"].transpose(1, 2).reshape(2, -1, 56, 56)
    assert not torch.allclose(stages[0], patch_embedding)
    # The hooks live only during the call.
    assert all(not stage._forward_hooks for stage in encoder_stages)


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
        + 6.4 * mask.mean(dim=(1, 2)).mean()
    )
    assert torch.allclose(losses["total"], expected)
    # The L1 term is a per-clip mean averaged over clips, its weight fixed: doubling the batch
    # leaves it unchanged.
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


def test_sparsity_prior_is_the_authors_at_their_batch_size():
    """The prior equals the authors' summed one, 0.4 * sum over the batch of each clip's mean|M|,
    on a known batch of their size 16; the YAMLs' default is that effective weight."""
    assert L1_WEIGHT == 6.4
    for path in LMAC_YAMLS:
        assert _yaml_value(path, "l1_weight") == 6.4 and _yaml_value(path, "batch_size") == 16
    # A known batch: clip b's mask is b / 16 everywhere, so sum_b mean|M_b| = 120 / 16 = 7.5.
    mask = torch.arange(16.0).view(16, 1, 1).expand(16, 431, 513) / 16
    authors = 0.4 * sum(float(clip.abs().mean()) for clip in mask)
    assert authors == pytest.approx(0.4 * 7.5)
    scores = torch.zeros(16, 3)
    target = torch.zeros(16, dtype=torch.long)
    losses = lmac_loss(scores, scores, mask, target, score_scale=30.0)
    ours = L1_WEIGHT * losses["l1"]
    assert float(ours) == pytest.approx(authors, rel=1e-6)
    ce = torch.nn.functional.cross_entropy(scores, target)
    assert float(losses["total"]) == pytest.approx(float(4 * ce - 0.2 * ce) + authors, rel=1e-6)


def _drive(schedule, optimizer, fid_in):
    """The rate after each epoch's step (epochs numbered from 1)."""
    brain = SimpleNamespace(hparams=SimpleNamespace(lr_annealing=schedule), optimizer=optimizer)
    rates = {}
    for epoch, fid_i in fid_in.items():
        LMACBrain.step_schedule(brain, epoch, fid_i)
        rates[epoch] = optimizer.param_groups[0]["lr"]
    return rates


@pytest.mark.parametrize("path", LMAC_YAMLS)
def test_plateau_schedule_halves_when_the_authors_would_and_resumes(path, tmp_path):
    """The YAML's schedule on the validation Fid-In: held through epoch 100 however Fid-In falls;
    after it halved at the 4th validation in a row below the best since epoch 100 (patience 3),
    an equal value resets the count; a run resumed from a checkpoint continues the same way."""
    hparams = _load_lmac_yaml(path, tmp_path)
    schedule = hparams["lr_annealing"]
    assert isinstance(schedule, ReduceLROnPlateau)
    assert (schedule.factor, schedule.patience, schedule.dont_halve_until_epoch) == (0.5, 3, 100)
    assert hparams["checkpointer"].recoverables["lr_annealing"] is schedule
    decoder = hparams["decoder"]
    optimizer = hparams["opt_class"](decoder.parameters())
    hparams["checkpointer"].add_recoverable("optimizer", optimizer)  # as sb.Brain does
    lr = hparams["lr"]
    fid_in = {epoch: 0.99 - epoch / 200 for epoch in range(1, 100)}  # falling, never halved
    fid_in.update({100: 0.80, 101: 0.70, 102: 0.75, 103: 0.79, 104: 0.60, 105: 0.80, 106: 0.85})
    fid_in.update({107: 0.84})
    rates = _drive(schedule, optimizer, fid_in)
    assert all(rates[epoch] == lr for epoch in range(1, 104))
    assert rates[104] == lr / 2  # 101-104 below 0.80: the 4th halves
    assert rates[105] == rates[106] == rates[107] == lr / 2  # 0.80 resets; 0.85 the new best
    hparams["checkpointer"].save_checkpoint()  # after epoch 107: one validation below 0.85
    tail = {108: 0.84, 109: 0.83, 110: 0.84, 111: 0.90}
    straight = _drive(schedule, optimizer, tail)
    assert straight == {108: lr / 2, 109: lr / 2, 110: lr / 4, 111: lr / 4}

    resumed = _load_lmac_yaml(path, tmp_path)  # a fresh process's objects, then recovery
    resumed_optimizer = resumed["opt_class"](resumed["decoder"].parameters())
    resumed["checkpointer"].add_recoverable("optimizer", resumed_optimizer)
    assert resumed["checkpointer"].recover_if_possible() is not None
    assert resumed_optimizer.param_groups[0]["lr"] == lr / 2
    assert _drive(resumed["lr_annealing"], resumed_optimizer, tail) == straight


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
    # The log rounds (two epochs can both read 4.36): the loaded epoch's logged loss is the
    # lowest, and its checkpoint's exact loss is the lowest of the checkpoints kept.
    loaded = int(re.search(r"Epoch loaded: (\d+)", log).group(1))
    assert losses[loaded - 1] == min(losses), log
    kept = {}
    for ckpt in (out / "save").glob("CKPT+*"):
        meta = (ckpt / "CKPT.yaml").read_text()
        epoch = int(re.search(r"^epoch: (\d+)", meta, re.MULTILINE).group(1))
        kept[epoch] = float(re.search(r"^loss: (\S+)", meta, re.MULTILINE).group(1))
        # The plateau schedule is checkpointed, stepped before the epoch's checkpoint is saved.
        assert len(torch.load(ckpt / "lr_annealing.ckpt")["losses"]) == epoch
    assert loaded in kept and kept[loaded] == min(kept.values()), kept


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
