"""Deletion and insertion curves (Petsiuk et al., 2018) of an interpretation's ranking.

The cells of a log-spectrogram are ranked by a map (most important first). Deletion: the
predicted class's probability as the top-ranked share f of the cells is set to 0 (silence in the
log1p domain), f = 0, 1/steps, ..., 1. Insertion: the same, starting from an all-zero input and
restoring the top-ranked cells. A faithful ranking makes the deletion curve fall fast (small
area) and the insertion curve rise fast (large area). Probabilities are those of
``interpreters.metrics.probabilities`` (the FA convention), so every area lies in [0, 1].

Example
-------
>>> weights = torch.tensor([[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
>>> def classify(x):  # two "classes" that read one cell each
...     return torch.einsum("btf,ctf->bc", x, weights)
>>> log_spec = torch.tensor([[[0.5, 0.0], [0.0, 1.0]]])
>>> curves = deletion_insertion(classify, log_spec, ranking_map=log_spec, steps=4)
>>> curves["fractions"].tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
>>> [round(p, 3) for p in curves["deletion"][0].tolist()]  # the top cell carried class 0
[0.622, 0.378, 0.5, 0.5, 0.5]
>>> [round(p, 3) for p in curves["insertion"][0].tolist()]
[0.5, 0.731, 0.622, 0.622, 0.622]
"""

from __future__ import annotations

import torch

from interpreters.metrics import probabilities


def _ranked_masks(ranking_map: torch.Tensor, fraction: float) -> torch.Tensor:
    """1 on the top-ranked ``fraction`` of each clip's cells, else 0."""
    flat = ranking_map.flatten(1).float()
    n_keep = int(round(fraction * flat.shape[1]))
    mask = torch.zeros_like(flat)
    if n_keep:
        top = flat.topk(n_keep, dim=1).indices
        mask.scatter_(1, top, 1.0)
    return mask.view_as(ranking_map)


@torch.no_grad()
def deletion_insertion(classify, log_spec, ranking_map, steps: int = 10) -> dict:
    """Curves [B, steps + 1] of the predicted class's probability and their areas [B].

    Returns ``fractions`` [steps + 1], ``deletion``, ``insertion``, ``deletion_auc`` and
    ``insertion_auc`` (trapezoid rule over the fractions).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fractions = torch.linspace(0, 1, steps + 1)
    predicted = probabilities(classify(log_spec)).argmax(dim=1, keepdim=True)
    deletion, insertion = [], []
    for fraction in fractions.tolist():
        top = _ranked_masks(ranking_map, fraction).to(log_spec.dtype)
        both = torch.cat([log_spec * (1 - top), log_spec * top])  # one batched forward
        probs = probabilities(classify(both)).gather(1, predicted.repeat(2, 1)).squeeze(1)
        deletion.append(probs[: len(log_spec)])
        insertion.append(probs[len(log_spec) :])
    deletion, insertion = torch.stack(deletion, dim=1), torch.stack(insertion, dim=1)
    x = fractions.to(deletion.device)
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_auc": torch.trapezoid(deletion, x, dim=1),
        "insertion_auc": torch.trapezoid(insertion, x, dim=1),
    }
