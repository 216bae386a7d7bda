"""Model-randomisation sanity check (Adebayo et al., 2018) for interpretation maps.

An interpretation that explains the *trained* model must change when the model's weights are
randomised. ``randomised_copy`` re-initialises the cosine head (``head``) or, cascading from the
top, the last backbone stage and the head (``last_stage``); ``spearman`` compares, clip by clip,
the maps of the trained and of the randomised model. A method whose maps barely change
(correlation near 1) does not depend on what the model learnt.

Example
-------
>>> a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
>>> spearman(a, a * 10).tolist(), spearman(a, -a).tolist()
([1.0], [-1.0])
"""

from __future__ import annotations

import copy

import torch

LEVELS = ("none", "head", "last_stage")


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks of each row of ``values`` [B, N] (ties broken by position)."""
    order = values.argsort(dim=1)
    ranks = torch.empty_like(order, dtype=torch.float64)
    positions = torch.arange(values.shape[1], dtype=torch.float64).expand_as(ranks)
    return ranks.scatter_(1, order, positions)


def spearman(map_1: torch.Tensor, map_2: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of two maps per clip; [B, ...] each -> [B]."""
    ranks_1 = _ranks(map_1.flatten(1).double())
    ranks_2 = _ranks(map_2.flatten(1).double())
    ranks_1 = ranks_1 - ranks_1.mean(dim=1, keepdim=True)
    ranks_2 = ranks_2 - ranks_2.mean(dim=1, keepdim=True)
    norm = ranks_1.norm(dim=1) * ranks_2.norm(dim=1)
    return ((ranks_1 * ranks_2).sum(dim=1) / norm.clamp_min(1e-12)).float()


@torch.no_grad()
def _reinitialise(module: torch.nn.Module, seed: int) -> None:
    """Fresh random weights: ``reset_parameters`` where a layer has one; other parameters held
    directly by a module (e.g. the cosine head's class vectors, layer-scale factors) get Xavier
    (matrices), ones (layer-scale ``gamma``) or zeros (other vectors)."""
    torch.manual_seed(seed)
    for submodule in module.modules():
        if hasattr(submodule, "reset_parameters"):
            submodule.reset_parameters()
            continue
        for name, parameter in submodule.named_parameters(recurse=False):
            if parameter.dim() >= 2:
                torch.nn.init.xavier_uniform_(parameter)
            elif "gamma" in name:
                parameter.fill_(1.0)
            else:
                parameter.zero_()


def last_stage(embedding_model) -> torch.nn.Module:
    """The last stage of a FocalNet / the last layer of a ViT."""
    backbone = embedding_model.backbone
    if embedding_model.kind == "focalnet":
        return backbone.focalnet.encoder.stages[-1]
    layers = backbone.layers if hasattr(backbone, "layers") else backbone.encoder.layer
    return layers[-1]  # transformers 5 names the ViT layer list `layers`, 4 `encoder.layer`


def randomised_copy(model, level: str, seed: int = 0):
    """A copy of ``model`` (``recipes.inference.AudioInterpreter``) with weights re-initialised.

    ``none``: the same weights (the check must then give correlation 1); ``head``: the cosine
    head; ``last_stage``: the head and the last backbone stage (cascade from the top).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    clone = copy.deepcopy(model)
    if level in ("head", "last_stage"):
        _reinitialise(clone.classifier, seed)
    if level == "last_stage":
        _reinitialise(last_stage(clone.embedding_model), seed + 1)
    clone.embedding_model.eval()
    clone.classifier.eval()
    return clone
