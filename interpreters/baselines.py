"""Baseline interpretation maps, thresholded like the modulation map (same q, same mask area).

A FID-I means little until it is compared with trivial masks of the same area:

- ``random``: uniform noise (a seeded generator), i.e. a random 1 - q share of the cells;
- ``energy``: the log-spectrogram itself, i.e. the loudest 1 - q share of the cells.

The gradient baselines (saliency and the other attribution methods) are Captum's:
``interpreters.attributions``.

Each returns a map [B, T, F] that ``interpreters.maps.quantile_mask`` thresholds; their entries in
the method registry (``interpreters.methods``) call them.

Example
-------
>>> from interpreters.maps import quantile_mask
>>> log_spec = torch.tensor([[[0.0, 3.0], [1.0, 2.0]]])
>>> quantile_mask(energy_map(log_spec), 0.5)
tensor([[[0., 1.],
         [0., 1.]]])
"""

from __future__ import annotations

import torch


def random_map(log_spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise of the log-spectrogram's shape (CPU generator, moved to its device)."""
    noise = torch.rand(log_spec.shape, generator=generator)
    return noise.to(log_spec.device)


def energy_map(log_spec: torch.Tensor) -> torch.Tensor:
    """The log-spectrogram: thresholding it keeps the loudest cells."""
    return log_spec.detach().float()
