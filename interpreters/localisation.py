"""Ground-truth localisation of interpretations on two-source mixtures.

For a mixture whose sources have known time-frequency regions, an interpretation of the
prediction should lie inside the region of the source it names. Per clip:

- ``share_in_region`` = sum(mask * region) / sum(mask): the share of the mask inside the region;
- ``iou`` = sum(min(mask, region)) / sum(max(mask, region)): intersection over union (the usual
  one for binary masks, its soft version for PIQ's masks).

Regions come from the synthetic generator (``data_prep.synthetic.clip_region``, exact) or, for
real clips, from the separate sources' energy (``energy_regions``).

``edge_frames`` and ``edge_shares`` measure whether masks hug a clip's edges: the share of a
mask in the frames of its first and last ``seconds``, to compare with those frames' share of the
clip (their area share).

Example
-------
>>> region = torch.zeros(1, 4, 4, dtype=torch.bool)
>>> region[0, :2] = True
>>> mask = region.float()
>>> localisation_scores(mask, region)
{'share_in_region': tensor([1.]), 'iou': tensor([1.])}
>>> localisation_scores(1 - mask, region)
{'share_in_region': tensor([0.]), 'iou': tensor([0.])}
"""

from __future__ import annotations

import torch


def localisation_scores(mask: torch.Tensor, region: torch.Tensor) -> dict:
    """Per-clip share of the mask in the region and IoU; ``mask``, ``region`` [B, T, F]."""
    mask = mask.float()
    region = region.float()
    inside = (mask * region).flatten(1).sum(dim=1)
    total = mask.flatten(1).sum(dim=1)
    union = torch.maximum(mask, region).flatten(1).sum(dim=1)
    intersection = torch.minimum(mask, region).flatten(1).sum(dim=1)
    return {
        "share_in_region": torch.where(total > 0, inside / total.clamp_min(1e-12), 0.0),
        "iou": torch.where(union > 0, intersection / union.clamp_min(1e-12), 0.0),
    }


def energy_regions(log_spec_1: torch.Tensor, log_spec_2: torch.Tensor, threshold: float = 0.35):
    """Regions of two sources from their separate log-spectrograms [T, F]: the cells where a
    source exceeds ``threshold`` times its maximum and dominates the other source.

    Example
    -------
    >>> a, b = torch.tensor([[4.0, 0.0]]), torch.tensor([[1.0, 2.0]])
    >>> [region.tolist() for region in energy_regions(a, b)]
    [[[True, False]], [[False, True]]]
    """
    loud_1 = log_spec_1 > threshold * log_spec_1.max()
    loud_2 = log_spec_2 > threshold * log_spec_2.max()
    return loud_1 & (log_spec_1 >= log_spec_2), loud_2 & (log_spec_2 > log_spec_1)


def edge_frames(n_frames: int, hop: int, sample_rate: int, seconds: float = 0.25) -> tuple:
    """The frames of a clip's first and last ``seconds``: frames whose centre (``index * hop``
    samples, SpeechBrain's centred STFT) lies within that time of the clip's start or end.

    Returns
    -------
    first, last : slice
        Over the time axis of a [batch, time, freq] spectrogram.

    Example
    -------
    >>> first, last = edge_frames(431, 186, 16000)  # 5 s at 16 kHz: 22 frames each
    >>> (first.stop - first.start, last.stop - last.start)
    (22, 22)
    """
    reach = seconds * sample_rate
    clip_end = (n_frames - 1) * hop
    n_first = sum(1 for index in range(n_frames) if index * hop < reach)
    n_last = sum(1 for index in range(n_frames) if clip_end - index * hop < reach)
    return slice(0, n_first), slice(n_frames - n_last, n_frames)


def edge_shares(mask: torch.Tensor, first: slice, last: slice) -> dict:
    """Per-clip share of a mask [B, T, F] in the frames ``first`` and ``last`` (``edge_frames``).

    Example
    -------
    >>> mask = torch.zeros(1, 10, 2)
    >>> mask[0, 0] = 1.0
    >>> mask[0, 5] = 1.0
    >>> shares = edge_shares(mask, slice(0, 2), slice(8, 10))
    >>> shares["first"].tolist(), shares["last"].tolist()
    ([0.5], [0.0])
    """
    total = mask.float().sum(dim=(1, 2)).clamp_min(1e-12)
    return {
        "first": mask[:, first].float().sum(dim=(1, 2)) / total,
        "last": mask[:, last].float().sum(dim=(1, 2)) / total,
    }
