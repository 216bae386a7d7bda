"""By-design interpretation maps and the one mask function.

A by-design map is read off the classifier's own forward pass (no extra training):

- FocalNet: the last layer's modulation map ``M = sqrt(sum_k m_k^2)``, the L2 norm over
  channels of the modulator ``m`` (paper, section 2.4);
- ViT: the last layer's CLS-to-patch attention averaged over heads (paper, section 3.2).

The map is upsampled to the log-spectrogram's ``[time, freq]`` grid and thresholded at its
per-clip ``q``-quantile (paper, eq. 5): ``mask = 1`` where ``map >= quantile_q(map)``, else 0.
The interpretation is ``mask * log_spec``.

Example
-------
>>> import torch
>>> modulator = torch.rand(2, 1024, 7, 7)
>>> mask = quantile_mask(upsample_map(modulation_map(modulator)), quantile=0.9)
>>> mask.shape
torch.Size([2, 431, 513])
>>> round(mask.mean().item(), 2)
0.1
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

SPECTROGRAM_SIZE = (431, 513)  # [time, freq] of a 5 s clip at 16 kHz (recipes/features.py)
_QUANTILE_MAX_NUMEL = 2**24  # torch.quantile's input-size limit per call


def modulation_map(modulator: torch.Tensor) -> torch.Tensor:
    """FocalNet's modulation map: the L2 norm of the modulator over channels.

    Arguments
    ---------
    modulator : torch.Tensor
        The last focal layer's modulator ``m`` [batch, channels, height, width].

    Returns
    -------
    torch.Tensor
        ``M = sqrt(sum_k m_k^2)`` [batch, height, width], float32 (computed in float32, so a
        half-precision modulator does not overflow).

    Example
    -------
    >>> modulator = torch.zeros(1, 2, 1, 2)
    >>> modulator[0, :, 0, 0] = torch.tensor([3.0, 4.0])
    >>> modulation_map(modulator)
    tensor([[[5., 0.]]])
    """
    if modulator.dim() != 4:
        raise ValueError(
            f"modulator must be [batch, channels, height, width], got shape "
            f"{tuple(modulator.shape)}"
        )
    return torch.linalg.vector_norm(modulator.float(), ord=2, dim=1)


def attention_map(attentions: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """ViT's attention map: the last layer's CLS-to-patch attention averaged over heads.

    Arguments
    ---------
    attentions : torch.Tensor or sequence of torch.Tensor
        The last layer's attention probabilities [batch, heads, 1 + N, 1 + N] (token 0 is CLS,
        tokens 1..N are the patches in row-major order). A sequence (e.g. Hugging Face's
        ``output_attentions`` tuple, one tensor per layer) is accepted and its last element used.

    Returns
    -------
    torch.Tensor
        [batch, s, s] with ``s = sqrt(N)`` (14 for ViT-base at 224 x 224), float32.

    Raises
    ------
    ValueError
        If the tensor is not 4-D square attention or ``N`` is not a perfect square.

    Example
    -------
    >>> attentions = torch.zeros(1, 2, 5, 5)
    >>> attentions[0, 0, 0, 1:] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    >>> attentions[0, 1, 0, 1:] = torch.tensor([0.3, 0.2, 0.1, 0.0])
    >>> attention_map(attentions)
    tensor([[[0.2000, 0.2000],
             [0.2000, 0.2000]]])
    """
    if not isinstance(attentions, torch.Tensor):
        attentions = attentions[-1]
    if attentions.dim() != 4 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(
            f"attentions must be [batch, heads, 1 + N, 1 + N], got shape {tuple(attentions.shape)}"
        )
    n_patches = attentions.shape[-1] - 1
    side = math.isqrt(max(n_patches, 0))
    if n_patches < 1 or side * side != n_patches:
        raise ValueError(
            f"attention_map needs a square patch grid: N = {n_patches} patch tokens (plus CLS) "
            "is not a perfect square"
        )
    cls_to_patches = attentions[:, :, 0, 1:].float().mean(dim=1)  # [B, N]
    return cls_to_patches.reshape(-1, side, side)


def upsample_map(map: torch.Tensor, size: tuple[int, int] = SPECTROGRAM_SIZE) -> torch.Tensor:
    """Bilinear upsampling of a coarse map to the log-spectrogram's grid.

    Arguments
    ---------
    map : torch.Tensor
        [batch, height, width], e.g. [B, 7, 7] or [B, 14, 14].
    size : tuple of int
        Output (time, freq); (431, 513) for 5 s clips.

    Returns
    -------
    torch.Tensor
        [batch, time, freq], float32 (``align_corners=False``).

    Example
    -------
    >>> upsample_map(torch.rand(3, 7, 7)).shape
    torch.Size([3, 431, 513])
    """
    if map.dim() != 3:
        raise ValueError(f"map must be [batch, height, width], got shape {tuple(map.shape)}")
    upsampled = F.interpolate(
        map.float().unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False
    )
    return upsampled.squeeze(1)


def _sorted_quantile(flat: torch.Tensor, quantile: float) -> torch.Tensor:
    """``torch.quantile(flat, quantile, dim=1)`` (linear interpolation) without a size limit."""
    values = flat.sort(dim=1).values
    position = quantile * (flat.shape[1] - 1)
    low = math.floor(position)
    high = min(low + 1, flat.shape[1] - 1)
    fraction = position - low
    return values[:, low] + fraction * (values[:, high] - values[:, low])


def quantile_mask(map: torch.Tensor, quantile: float) -> torch.Tensor:
    """Binary interpretation mask: 1 where the map reaches its per-clip ``q``-quantile (eq. 5).

    The quantile is computed per clip over all its ``time x freq`` values, in float32, with
    ``torch.quantile``'s default linear interpolation. About a ``1 - q`` share of each clip is
    kept (exactly, up to ties); ``q = 0`` keeps everything and ``q = 1`` keeps the maximum.

    Arguments
    ---------
    map : torch.Tensor
        Upsampled map [batch, time, freq] (any float dtype).
    quantile : float
        The quantile order ``q`` in [0, 1] (0.9 in the paper).

    Returns
    -------
    torch.Tensor
        Mask [batch, time, freq] of 0.0 / 1.0, float32.

    Raises
    ------
    ValueError
        If ``quantile`` is outside [0, 1] or the map is not 3-D.

    Example
    -------
    >>> map = torch.arange(10.0).reshape(1, 2, 5)
    >>> quantile_mask(map, quantile=0.5)
    tensor([[[0., 0., 0., 0., 0.],
             [1., 1., 1., 1., 1.]]])
    >>> quantile_mask(map, quantile=1.5)
    Traceback (most recent call last):
    ...
    ValueError: quantile must be in [0, 1], got 1.5
    """
    quantile = float(quantile)
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    if map.dim() != 3:
        raise ValueError(f"map must be [batch, time, freq], got shape {tuple(map.shape)}")
    flat = map.float().reshape(map.shape[0], -1)  # [B, T * F]
    n_values = flat.shape[1]
    if flat.numel() == 0:
        return torch.zeros_like(map, dtype=torch.float32)
    if n_values > _QUANTILE_MAX_NUMEL:
        thresholds = _sorted_quantile(flat, quantile)
    else:
        # torch.quantile accepts at most 2**24 elements per call: go by chunks of clips.
        clips_per_call = max(1, _QUANTILE_MAX_NUMEL // n_values)
        thresholds = torch.cat(
            [torch.quantile(chunk, quantile, dim=1) for chunk in flat.split(clips_per_call, dim=0)]
        )
    return (flat >= thresholds.unsqueeze(1)).float().reshape(map.shape)


MAP_FUNCTIONS = {"focalnet": modulation_map, "vit": attention_map}
