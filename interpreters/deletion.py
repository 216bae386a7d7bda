"""Deletion and insertion curves (Petsiuk et al., 2018) of an interpretation's ranking.

The cells of a log-spectrogram are ranked by a map (most important first). Deletion: the
predicted class's probability as the top-ranked share f of the cells is set to 0 (silence in the
log1p domain), f = 0, 1/steps, ..., 1. Insertion: the same, starting from an all-zero input and
restoring the top-ranked cells. A faithful ranking makes the deletion curve fall fast (small
area) and the insertion curve rise fast (large area). Probabilities are those of
``interpreters.metrics.probabilities``: at scale 1 (the FA convention) under ``deletion``,
``insertion``, ``deletion_auc``, ``insertion_auc``; given ``score_scale`` (the classifier's
training scale, the model's real probabilities), also under the same names with ``_scaled``,
from the same forwards. Every area lies in [0, 1].

Cells are ranked as the same-area masks rank them (``interpreters.maps.quantile_mask``): by
decreasing map value, cells of equal value in the masks' fixed order (``maps.tie_order``). So
the cells removed at fraction f are exactly those a same-area mask at q = 1 - f keeps, and a
map with ties (silence, an energy map's floor) gives the same curve on every run.

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

from interpreters.maps import quantile_mask
from interpreters.metrics import probabilities


def ranked_mask(ranking_map: torch.Tensor, fraction: float) -> torch.Tensor:
    """1 on the top-ranked ``fraction`` of each clip's cells, else 0 (float32).

    The same cells as the same-area mask at ``q = 1 - fraction`` (``maps.quantile_mask``:
    ``floor(fraction * cells + 0.5)`` cells, ties in ``maps.tie_order``).

    Example
    -------
    >>> flat = torch.zeros(1, 2, 3)  # every cell tied
    >>> torch.equal(ranked_mask(flat, 0.5), quantile_mask(flat, 0.5))
    True
    >>> int(ranked_mask(flat, 0.5).sum()), int(ranked_mask(flat, 1.0).sum())
    (3, 6)
    """
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return quantile_mask(ranking_map, 1.0 - fraction)


@torch.no_grad()
def deletion_insertion(
    classify, log_spec, ranking_map, steps: int = 10, score_scale: float | None = None
) -> dict:
    """Curves [B, steps + 1] of the predicted class's probability and their areas [B].

    Arguments
    ---------
    classify : callable
        Log-spectrograms [B, T, F] -> cosine scores [B, n_classes].
    log_spec : torch.Tensor
        [B, T, F].
    ranking_map : torch.Tensor
        [B, T, F], higher: more important (a map or a soft mask).
    steps : int
        Fractions 0, 1/steps, ..., 1.
    score_scale : float, optional
        The classifier's training scale: also return the curves at that scale (``_scaled``).

    Returns
    -------
    dict
        ``fractions`` [steps + 1], ``deletion``, ``insertion`` [B, steps + 1], ``deletion_auc``
        and ``insertion_auc`` [B] (trapezoid rule over the fractions) at scale 1; with
        ``score_scale``, ``deletion_scaled``, ``insertion_scaled``, ``deletion_auc_scaled``,
        ``insertion_auc_scaled`` at that scale and ``score_scale`` itself.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    scales = {"": 1.0} if score_scale is None else {"": 1.0, "_scaled": float(score_scale)}
    fractions = torch.linspace(0, 1, steps + 1)
    scores = classify(log_spec)
    predicted = probabilities(scores).argmax(dim=1, keepdim=True).repeat(2, 1)
    curves = {suffix: ([], []) for suffix in scales}
    for fraction in fractions.tolist():
        top = ranked_mask(ranking_map, fraction).to(log_spec.dtype)
        both_scores = classify(torch.cat([log_spec * (1 - top), log_spec * top]))  # one forward
        for suffix, scale in scales.items():
            probs = probabilities(both_scores, scale).gather(1, predicted).squeeze(1)
            curves[suffix][0].append(probs[: len(log_spec)])
            curves[suffix][1].append(probs[len(log_spec) :])
    result = {"fractions": fractions}
    for suffix, (deletion, insertion) in curves.items():
        deletion, insertion = torch.stack(deletion, dim=1), torch.stack(insertion, dim=1)
        x = fractions.to(deletion.device)
        result.update(
            {
                f"deletion{suffix}": deletion,
                f"insertion{suffix}": insertion,
                f"deletion_auc{suffix}": torch.trapezoid(deletion, x, dim=1),
                f"insertion_auc{suffix}": torch.trapezoid(insertion, x, dim=1),
            }
        )
    if score_scale is not None:
        result["score_scale"] = float(score_scale)
    return result
