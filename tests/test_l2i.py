"""L2I (interpreters/l2i.py) on SpeechBrain's L2I modules, and its recipe (train_l2i.py)."""

import json

import pytest
import torch
from speechbrain.lobes.models import L2I

from interpreters.l2i import L2IInterpreter, l2i_loss, l2i_stages
from interpreters.methods import METHODS, method_maps
from recipes.loading import load_trained_run, resolve_methods
from recipes.models import count_parameters


def test_the_modules_are_speechbrains_and_full_size_counts():
    interpreter = L2IInterpreter([2048, 1024, 512], n_classes=50)  # CNN14's blocks 6, 5, 4
    assert isinstance(interpreter.psi, L2I.Psi) and isinstance(interpreter.theta, L2I.Theta)
    assert isinstance(interpreter.nmf_decoder, L2I.NMFDecoderAudio)
    assert isinstance(interpreter.nmf_encoder, L2I.NMFEncoder)
    assert count_parameters(interpreter.psi) == 21_697_124
    assert interpreter.dictionary().shape == (513, 100)
    with pytest.raises(ValueError, match="narrowest"):
        L2IInterpreter([8, 4, 16], n_classes=3)


def test_stages_of_any_backbone_reach_psis_layout():
    cnn14 = [torch.rand(1, 16, 13, 2), torch.rand(1, 8, 13, 2), torch.rand(1, 4, 26, 5)]
    assert all(a is b for a, b in zip(l2i_stages(cnn14), cnn14, strict=True))  # unchanged
    vit = [torch.rand(1, 8, 14, 14) for _ in range(3)]
    assert [tuple(s.shape[2:]) for s in l2i_stages(vit)] == [(14, 14), (14, 14), (28, 29)]
    interpreter = L2IInterpreter([8, 8, 8], n_classes=3, n_components=5)
    assert interpreter(vit)["activations"].shape == (1, 5, 431)
    with pytest.raises(ValueError, match="three representations"):
        l2i_stages(vit[:2])


def test_mask_is_the_relevant_components_share_known_answer():
    """Two components, one relevant to class 0 only: the mask is its share of W H."""
    torch.manual_seed(0)
    interpreter = L2IInterpreter([4, 4, 2], n_classes=2, n_components=2, frames=3, n_freq=4)
    with torch.no_grad():
        interpreter.nmf_decoder.W.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0, 2], [3, 1]]))
        interpreter.theta.hard_att.weight.fill_(1.0)  # z = sum over time of H
        interpreter.theta.classifier[0].weight.copy_(torch.tensor([[1.0, 0.1], [0.0, 1.0]]))
    activations = torch.tensor([[[1.0, 2.0, 0.0], [1.0, 1.0, 1.0]]])  # [1, K=2, T=3]
    # class 0: r = [3, 0.3] / 3 -> only component 0 (r = 1 > 0.2; 0.1 < 0.2)
    mask = interpreter.mask(activations, torch.tensor([0]))
    dictionary = interpreter.dictionary()
    kept = (dictionary[:, :1] @ activations[0, :1]).T
    everything = (dictionary @ activations[0]).T
    assert torch.allclose(mask[0], kept / (everything + 1e-10))
    assert mask[0, 2, 0] == 0 and mask[0, 0, 0] == 1  # frame 2: component 0 silent
    # class 1: only component 1 is relevant (theta weight 0 for component 0)
    other = interpreter.mask(activations, torch.tensor([1]))
    assert torch.allclose(mask + other, (everything > 0).float()[None])


def test_loss_terms_and_gradients():
    interpreter = L2IInterpreter([4, 4, 2], n_classes=3, n_components=4)
    interpreter.nmf_decoder.requires_grad_(False)
    stages = [torch.rand(2, 4, 13, 2), torch.rand(2, 4, 13, 2), torch.rand(2, 2, 26, 5)]
    out = interpreter(stages)
    log_spec, logits = torch.rand(2, 431, 513), torch.tensor([[5.0, 0, 0], [0, 0, 5.0]])
    losses = l2i_loss(out, log_spec, logits)
    expected = (
        10 * ((out["reconstruction"] - log_spec) ** 2).mean()
        + 0.8 * out["activations"].abs().mean()
        + (torch.softmax(logits, 1) * -torch.log(out["theta"] + 1e-10)).mean()
    )
    assert torch.allclose(losses["total"], expected)
    losses["total"].backward()
    assert interpreter.psi.c1.weight.grad.abs().sum() > 0
    assert interpreter.theta.classifier[0].weight.grad.abs().sum() > 0
    assert interpreter.nmf_decoder.W.grad is None  # the dictionary stays frozen


def test_l2i_recipe_end_to_end(l2i_run, classifier_runs):
    """train_l2i.py: the dictionary learned first (its loss falls), the run's card rebuilds the
    interpreter with its learned dictionary, and the method runs through the registry."""
    log = (l2i_run / "train_log.txt").read_text().splitlines()
    nmf = [float(line.split("nmf_loss: ")[1]) for line in log if "nmf_loss" in line]
    assert len(nmf) == 2 and nmf[1] < nmf[0]
    card = json.loads((l2i_run / "model.json").read_text())
    assert card["method"] == "l2i" and card["interpreter"]["n_components"] == 8
    metrics = json.loads((l2i_run / "test_metrics.json").read_text())
    assert metrics["method"] == "l2i" and metrics["n_clips"] == 6
    assert (l2i_run / "interpretations").is_dir()

    name, module = load_trained_run(l2i_run, classifier_runs["focalnet"])
    assert name == "l2i" and bool(module.dictionary_learned)
    assert METHODS["l2i"].mask == "soft" and "l2i_hard" in METHODS
    model, trained, methods = resolve_methods(l2i_run)
    assert methods == ["l2i"]
    log_spec = torch.rand(2, 431, 513)
    _, maps = method_maps(model.classifier, log_spec, ["l2i", "l2i_hard"], trained)
    assert maps["l2i"].shape == (2, 431, 513)
    assert maps["l2i"].min() >= 0 and maps["l2i"].max() <= 1
