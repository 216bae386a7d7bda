"""The PIQ interpreter (interpreters/piq.py) and its recipe (recipes/piq.py, train_piq.py)."""

import json
import math
import re

import pytest
import speechbrain as sb
import torch
from recipe_runs import run_script, tiny_args
from speechbrain.lobes.models import PIQ
from speechbrain.utils.train_logger import FileTrainLogger

from data_prep.audio import load_clip
from interpreters.piq import (
    PIQInterpreter,
    class_code_ranges,
    piq_grid,
    piq_loss,
    target_mask,
)
from recipes.backbones import backbone_class
from recipes.features import LogSpectrogram, to_image
from recipes.models import (
    TINY_FOCALNET,
    TINY_VIT,
    build_embedder,
    build_head,
    count_parameters,
)
from recipes.piq import PIQBrain
from recipes.runs import RunFolderError, check_classifier_folder, load_classifier_checkpoint
from recipes.training import AtomicCheckpointer

# ------------------------------------------------------------ interpreter ---


@pytest.mark.parametrize(
    "backbone, width, expected",
    [("focalnet", "hidden_sizes", 71_405_569), ("vit", "hidden_size", 40_381_441)],
)
def test_parameter_counts_match_the_authors_layers(backbone, width, expected):
    """FocalNet-PIQ: 71,405,569 (paper: 71.4M); ViT-PIQ: 40,381,441 (paper: 44.4M, see README)."""
    value = getattr(backbone_class(backbone).config(), width)
    input_size = value[-1] if isinstance(value, list) else value
    assert count_parameters(PIQInterpreter(input_size, n_classes=50)) == expected


@pytest.mark.parametrize(
    "authors", [PIQ.VectorQuantizedPSIFocalNet_Audio, PIQ.VectorQuantizedPSIViT_Audio]
)
def test_the_interpreter_is_speechbrains_module_with_the_same_outputs(authors):
    """Our state dict loads into SpeechBrain's FocalNet-PIQ and ViT-PIQ (strict) and both give the
    same mask logits and quantised maps, in training (batch statistics) and in eval mode."""
    torch.manual_seed(0)
    ours = PIQInterpreter(16, n_classes=3, codebook_size=12)
    theirs = authors(dim=16, K=12, numclasses=3, shared_keys=0)
    theirs.load_state_dict(ours.state_dict())
    representation, labels = torch.randn(4, 16, 14, 14), torch.tensor([0, 2, 1, 2])
    for train in (True, False):
        ours.train(train), theirs.train(train)
        out = ours(representation, labels)
        mask_logits, z_e, z_q = theirs(representation, labels)
        assert torch.equal(out["mask_logits"], mask_logits.squeeze(1))
        assert torch.equal(out["z_e"], z_e) and torch.equal(out["z_q"], z_q)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        ours(representation, torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("kind, tiny", [("focalnet", TINY_FOCALNET), ("vit", TINY_VIT)])
def test_mask_of_real_representations_is_431_by_513_in_unit_interval(kind, tiny):
    embedder = build_embedder(kind, pretrained=False, config_overrides=tiny).eval()
    log_spec = torch.rand(2, 431, 513) * 3
    with torch.no_grad():
        grid = piq_grid(embedder(to_image(log_spec))["grid"])
    assert grid.shape == (2, embedder.embedding_size, 14, 14)
    interpreter = PIQInterpreter(embedder.embedding_size, n_classes=3, codebook_size=12)
    out = interpreter(grid, torch.tensor([0, 2]))
    assert out["mask"].shape == log_spec.shape
    assert out["mask"].min() >= 0 and out["mask"].max() <= 1
    assert out["codes"].shape == (2, 7, 7)


def test_vit_grid_keeps_patch_order_and_drops_cls():
    from recipes.backbones import _patch_grid

    hidden = torch.arange(197.0).view(1, 197, 1).expand(1, 197, 2)
    grid = piq_grid(_patch_grid(hidden))
    assert grid[0, 0, 0, 0] == 1 and grid[0, 0, 0, 1] == 2 and grid[0, 0, 1, 0] == 15
    assert grid[0, 1, 13, 13] == 196


def test_class_partition_covers_the_codebook_once():
    ranges = class_code_ranges(1024, 50)
    codes = [code for block in ranges for code in block]
    assert codes == list(range(1024))
    assert sorted({len(block) for block in ranges}) == [20, 21]
    # The authors' split, code by code: class round(linspace(-0.5, C - 0.51, K)[i]).
    authors = torch.round(torch.linspace(-0.5, 50 - 0.51, 1024)).long()
    ours = torch.tensor([label for label, block in enumerate(ranges) for _ in block])
    assert torch.equal(ours, authors)
    assert [len(block) for block in ranges[:4]] == [21, 20, 21, 20]
    # ESC-10 with 200 codes: 20 per class
    assert [len(block) for block in class_code_ranges(200, 10)] == [20] * 10
    with pytest.raises(ValueError, match="at least n_classes"):
        class_code_ranges(10, 50)


def test_a_clip_is_quantised_with_its_predicted_class_codes_only():
    torch.manual_seed(0)
    interpreter = PIQInterpreter(8, n_classes=4, codebook_size=16, width=8)
    codebook = interpreter.codebook
    ranges = class_code_ranges(16, 4)
    z_e = torch.randn(4, 8, 7, 7)
    # Make a code of class 3 the exact nearest code of every vector of clip 0 (class 1).
    with torch.no_grad():
        codebook.embedding.weight[ranges[3].start] = z_e[0, :, 0, 0]
    labels = torch.tensor([1, 0, 3, 2])
    _, z_q, codes = codebook(z_e, labels)
    for clip, label in enumerate(labels.tolist()):
        used = set(codes[clip].flatten().tolist())
        assert used <= set(ranges[label]), (clip, label, used)
    # Without the partition the planted code would win for clip 0 at position (0, 0).
    distances = torch.cdist(z_e[0, :, 0, 0][None], codebook.embedding.weight)
    assert distances.argmin().item() == ranges[3].start
    assert torch.equal(z_q[0, :, 0, 0], codebook.embedding.weight[codes[0, 0, 0]])


def test_straight_through_gradient_reaches_the_encoder_and_codes():
    interpreter = PIQInterpreter(8, n_classes=2, codebook_size=4, width=8)
    representation = torch.randn(2, 8, 14, 14)
    out = interpreter(representation, torch.tensor([0, 1]))
    losses = piq_loss(out, torch.ones(2, 431, 513))
    losses["total"].backward()
    assert interpreter.adapter.block[0].weight.grad.abs().sum() > 0  # through the quantiser
    assert interpreter.codebook.embedding.weight.grad.abs().sum() > 0  # codebook loss
    assert set(losses) == {"total", "reconstruction", "codebook", "commitment"}


def test_target_mask_thresholds_each_clip_at_its_own_maximum():
    log_spec = torch.stack([torch.full((4, 5), 1.0), torch.full((4, 5), 10.0)])
    log_spec[0, 0, 0], log_spec[1, 0, 0] = 4.0, 40.0  # peaks
    target = target_mask(log_spec, threshold=0.35)
    # 1.0 <= 0.35 * 4 = 1.4 and 10 <= 0.35 * 40 = 14: only the peaks are kept, in both clips.
    assert target.sum(dim=(1, 2)).tolist() == [1.0, 1.0]


def test_a_few_steps_on_synthetic_clips_lower_the_loss(synthetic_esc50):
    folder, rows = synthetic_esc50
    torch.manual_seed(0)
    wavs = torch.stack([load_clip(folder / "audio" / row["filename"]) for row in rows[:6]])
    log_spec, _ = LogSpectrogram()(wavs)
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET).eval()
    with torch.no_grad():
        grid = piq_grid(embedder(to_image(log_spec))["grid"])
    labels = torch.tensor([int(row["target"]) for row in rows[:6]])
    interpreter = PIQInterpreter(grid.shape[1], n_classes=3, codebook_size=12, width=8)
    optimizer = torch.optim.Adam(interpreter.parameters(), lr=1e-3)
    target = target_mask(log_spec)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = piq_loss(interpreter(grid, labels), target)["total"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# ------------------------------------------------------------------ recipe ---


def test_checkpoint_with_the_best_validation_fid_i_is_kept_and_used_for_the_test(tmp_path):
    """Validation FID-I 0.5, 1.0, 0.25 in three epochs: epoch 2 is kept and loaded for the test."""
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
    interpreter = PIQInterpreter(embedder.embedding_size, n_classes=2, codebook_size=4, width=8)
    counter = sb.utils.epoch_loop.EpochCounter(3)
    hparams = {
        "embedding_model": embedder,
        "classifier": build_head(embedder.embedding_size, 2),
        "epoch_counter": counter,
        "train_logger": FileTrainLogger(tmp_path / "train_log.txt"),
        "class_names": ["a", "b"],
        "n_interpretations": 0,
        "output_folder": str(tmp_path),
        "interpreter": interpreter,
        "interpreter_width": 8,
        "classifier_folder": tmp_path / "classifier",
        "data_folder": tmp_path / "data",
        "mask_threshold": 0.35,
        "score_scale": 30.0,  # the frozen classifier's (no real run folder here)
    }
    checkpointer = AtomicCheckpointer(
        tmp_path / "save", {"interpreter": interpreter, "counter": counter}
    )
    brain = PIQBrain(
        modules={"features": LogSpectrogram(), "interpreter": interpreter},
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-3),
        hparams=hparams,
        checkpointer=checkpointer,
        run_opts={"device": "cpu"},
    )
    brain.on_fit_start()
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["method"] == "piq" and card["interpreter"]["codebook_size"] == 4
    per_clip_fid_i = {1: [1.0, 0.0], 2: [1.0, 1.0], 3: [0.0, 0.0, 0.0, 1.0]}
    for epoch in counter:
        with torch.no_grad():
            interpreter.down.bias.fill_(epoch)  # tells the epochs' weights apart
        brain.on_stage_start(sb.Stage.TRAIN, epoch)
        brain.on_stage_end(sb.Stage.TRAIN, 1.0, epoch)
        brain.on_stage_start(sb.Stage.VALID, epoch)
        fid_i = torch.tensor(per_clip_fid_i[epoch])
        zeros = torch.zeros(len(fid_i), dtype=torch.long)
        brain.interp_metrics.update(zeros, zeros, fid_i, fid_i * 0, fid_i * 0)
        brain.on_stage_end(sb.Stage.VALID, 1.0, epoch)

    kept = {ckpt.meta["epoch"]: ckpt.meta["fid_i"] for ckpt in checkpointer.list_checkpoints()}
    assert kept == {2: 1.0, 3: 0.25}  # the best, and the latest (to resume from)
    brain.on_evaluate_start(max_key="fid_i")
    assert interpreter.down.bias.unique().tolist() == [2.0]
    assert counter.current == 2
    log = (tmp_path / "train_log.txt").read_text()
    assert "valid fid_i: 5.00e-01" in log and "valid fid_i: 2.50e-01" in log


@pytest.mark.parametrize("backbone", ["focalnet", "vit"])
def test_piq_recipe_end_to_end(backbone, classifier_runs, tiny_data, tmp_path, request):
    """FocalNet: the session's ``piq_run`` (the same command; not trained twice); ViT: here."""
    if backbone == "focalnet":
        out = request.getfixturevalue("piq_run")
    else:
        out = tmp_path / "piq"
        args = tiny_args(
            f"piq_{backbone}",
            backbone,
            tiny_data,
            out,
            f"--classifier_folder={classifier_runs[backbone]}",
            "--interpreter_width=8",
            "--codebook_size=12",
        )
        result = run_script("train_piq.py", args)
        assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    for key in ("fid_i", "fa", "fa_mask_in"):
        assert math.isfinite(metrics[key]) and abs(metrics[key]) <= 1, key
    assert metrics["n_clips"] == 6 and metrics["method"] == "piq"
    assert metrics["backbone"] == backbone
    assert metrics["quantile"] is None  # PIQ's mask is soft, not thresholded
    assert metrics["n_params"] > 0
    # The frozen classifier is the classifier run's: same predictions on the test fold.
    classifier = json.loads((classifier_runs[backbone] / "test_metrics.json").read_text())
    assert metrics["confusion_matrix"] == classifier["confusion_matrix"]
    assert metrics["classifier_n_params"] == classifier["n_params"]
    assert len(list((out / "interpretations").glob("*.png"))) == 2
    assert len(list((out / "save").glob("CKPT+*"))) == 1


def test_mismatched_or_missing_classifier_is_a_clear_error(classifier_runs, tiny_data, tmp_path):
    out = tmp_path / "piq"
    args = tiny_args(
        "piq_vit", "vit", tiny_data, out, f"--classifier_folder={classifier_runs['focalnet']}"
    )
    result = run_script("train_piq.py", args)
    assert result.returncode != 0
    assert "backbone: the run has 'focalnet', the YAML says 'vit'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "test_metrics.json").exists()

    hparams = {
        "backbone": "focalnet",
        "backbone_config": {"embed_dim": 8, "depths": [1, 1, 1, 1]},
        "n_classes": 50,
        "head_neurons": 192,
        "classifier_folder": classifier_runs["focalnet"],
    }
    with pytest.raises(RunFolderError, match="n_classes: the run has 3, the YAML says 50"):
        check_classifier_folder(hparams)
    hparams["classifier_folder"] = tmp_path / "nowhere"
    with pytest.raises(RunFolderError, match="nowhere: it is not a folder"):
        check_classifier_folder(hparams)
    with pytest.raises(RunFolderError, match="No checkpoint in"):
        load_classifier_checkpoint(tmp_path / "nowhere", {})
    assert not (tmp_path / "nowhere").exists()  # nothing created by a failed load


def test_quickstart_piq_step(quickstart_run, tmp_path):
    """The README's quickstart PIQ step on the quickstart classifier, exactly as written there."""
    data, classifier_folder = quickstart_run
    out = tmp_path / "quickstart-piq"
    args = [
        "hparams/piq_focalnet.yaml",
        f"--data_folder={data}",
        f"--classifier_folder={classifier_folder}",
        "--overrides_file=hparams/quickstart_piq.yaml",
        f"--output_folder={out}",
    ]
    result = run_script("train_piq.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    classifier = json.loads((classifier_folder / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 80 and metrics["acc"] == classifier["acc"]
    for key in ("fid_i", "fa", "fa_mask_in"):
        assert math.isfinite(metrics[key]), key
    log = (out / "train_log.txt").read_text()
    losses = [float(x) for x in re.findall(r"train reconstruction: ([0-9.e+-]+)", log)]
    assert len(losses) == 3 and losses[-1] < losses[0], losses  # the interpreter learns
