"""Grad-CAM (Selvaraju et al., ICCV 2017) on a backbone's feature grid.

For the predicted class ``c`` with score ``s_c`` and the feature grid ``A`` [B, D, h, w] (FocalNet's
last stage; ViT's patch tokens on their 14 x 14 grid, ``recipes.backbones``), the channel weights
are the spatially averaged gradients ``alpha_k = mean_ij d s_c / d A_kij`` and the map is
``ReLU(sum_k alpha_k A_k)`` [B, h, w]; ``interpreters.maps.upsample_map`` brings it to the
log-spectrogram's grid and ``quantile_mask`` thresholds it like every same-area method.

Example
-------
>>> grid = torch.ones(1, 2, 1, 2, requires_grad=True)
>>> score = (grid[:, 0] * torch.tensor([1.0, 3.0])).sum() - grid[:, 1].sum()
>>> gradients = torch.autograd.grad(score, grid)[0]
>>> gradcam_map(grid, gradients)  # alpha = (2, -1): 2 * 1 - 1 * 1 in both cells
tensor([[[1., 1.]]])
"""

from __future__ import annotations

import torch


def gradcam_map(grid: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k alpha_k A_k)`` [B, h, w] from the grid ``A`` and ``d s_c / d A``, both
    [B, D, h, w]."""
    weights = gradients.float().mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * grid.detach().float()).sum(dim=1))


def gradcam(classifier, log_spec: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps [B, h, w] of the predicted classes of log-spectrograms [B, T, F].

    ``classifier`` is a ``recipes.models.AudioClassifier`` (its forward returns ``scores`` and
    ``grid``); one forward and one backward per batch.
    """
    with torch.enable_grad():
        # the input asks for gradients so that the grid has a graph even when every weight is
        # frozen (a loaded run); only d s_c / d grid is taken
        out = classifier(log_spec.detach().requires_grad_(True))
        scores, grid = out["scores"], out["grid"]
        predicted = scores.argmax(dim=1, keepdim=True)
        gradients = torch.autograd.grad(scores.gather(1, predicted).sum(), grid)[0]
    return gradcam_map(grid, gradients)
