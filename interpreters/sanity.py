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


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks (1..N) of each row of ``values`` [B, N]; tied values share the mean of their ranks
    (scipy's ``rankdata(method="average")``), so a tied block carries no order of its own.

    Example
    -------
    >>> average_ranks(torch.tensor([[10.0, 20.0, 20.0, 5.0]])).tolist()
    [[2.0, 3.5, 3.5, 1.0]]
    """
    sorted_values, order = values.sort(dim=1, stable=True)
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    for row in range(values.shape[0]):
        _, group, counts = torch.unique_consecutive(
            sorted_values[row], return_inverse=True, return_counts=True
        )
        ends = counts.cumsum(0).double()  # last position (1-based) of each group of ties
        mean_rank = ends - (counts.double() - 1) / 2
        ranks[row, order[row]] = mean_rank[group]
    return ranks


def spearman(map_1: torch.Tensor, map_2: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of two maps per clip; [B, ...] each -> [B].

    The Pearson correlation of the average ranks (``average_ranks``), as scipy's ``spearmanr``.

    Example
    -------
    >>> x, y = torch.tensor([[0.0, 0, 0, 1, 2]]), torch.tensor([[0.0, 0, 0, 2, 1]])
    >>> spearman(x, y).tolist()  # scipy.stats.spearmanr gives 0.875
    [0.875]
    """
    ranks_1 = average_ranks(map_1.flatten(1).double())
    ranks_2 = average_ranks(map_2.flatten(1).double())
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


def randomised_copy(classifier, level: str, seed: int = 0):
    """A copy of ``classifier`` (``recipes.models.AudioClassifier``) with weights re-initialised.

    ``none``: the same weights (the check must then give correlation 1); ``head``: the cosine
    head; ``last_stage``: the head and the backbone's last stage (``Backbone.last_stage``),
    cascading from the top.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    clone = copy.deepcopy(classifier)
    if level in ("head", "last_stage"):
        _reinitialise(clone.classifier, seed)
    if level == "last_stage":
        _reinitialise(clone.backbone.last_stage(), seed + 1)
    return clone.eval()
