"""By-design interpretation maps and the one mask function.

A by-design map is read off the classifier's own forward pass (no extra training):

- FocalNet: the last layer's modulation map ``M = sqrt(sum_k m_k^2)``, the L2 norm over
  channels of the modulator ``m`` (paper, section 2.4);
- ViT: the last layer's CLS-to-patch attention averaged over heads (paper, section 3.2).

The map is upsampled to the log-spectrogram's ``[time, freq]`` grid and thresholded at its
per-clip ``q``-quantile (paper, eq. 5): ``mask = 1`` on the ``1 - q`` share of the cells where the
map is highest (exactly ``round((1 - q) * cells)`` cells, ties in a fixed order), else 0. The
interpretation is ``mask * log_spec``.

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
        tokens 1..N are the patches in row-major order), or only their CLS row
        [batch, heads, 1, 1 + N] (what ``recipes.backbones.ViT`` computes). A sequence (e.g.
        Hugging Face's ``output_attentions`` tuple, one tensor per layer) is accepted and its last
        element used.

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
    if attentions.dim() != 4 or attentions.shape[-2] not in (1, attentions.shape[-1]):
        raise ValueError(
            "attentions must be [batch, heads, 1 + N, 1 + N] or the CLS row [batch, heads, 1, "
            f"1 + N], got shape {tuple(attentions.shape)}"
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


_TIE_ORDER_SEED = 20231004  # fixed: the same tie order for every clip, run and machine
_tie_orders: dict[int, torch.Tensor] = {}


def tie_order(n_cells: int) -> torch.Tensor:
    """A fixed pseudo-random permutation of ``n_cells`` positions: the order in which cells of
    equal map value are kept. Spread over the spectrogram, so that ties (digital silence, cells
    that a map cannot tell apart) are not all taken from one corner of it.

    Example
    -------
    >>> torch.equal(tie_order(6), tie_order(6)), sorted(tie_order(6).tolist())
    (True, [0, 1, 2, 3, 4, 5])
    """
    if n_cells not in _tie_orders:
        generator = torch.Generator().manual_seed(_TIE_ORDER_SEED)
        _tie_orders[n_cells] = torch.randperm(n_cells, generator=generator)
    return _tie_orders[n_cells]


def kept_cells(n_cells, quantile: float) -> torch.Tensor:
    """How many cells a mask at quantile order ``q`` keeps: ``round((1 - q) * n_cells)``,
    rounded half up (``n_cells`` an int or a tensor of per-clip counts).

    Example
    -------
    >>> kept_cells(221103, 0.9).item(), kept_cells(10, 0.25).item(), kept_cells(10, 1.0).item()
    (22110, 8, 0)
    """
    n_cells = torch.as_tensor(n_cells)
    return torch.floor((1.0 - float(quantile)) * n_cells.double() + 0.5).long()


def quantile_mask(
    map: torch.Tensor, quantile: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary interpretation mask: the cells where the map is highest, a ``1 - q`` share (eq. 5).

    The paper keeps the cells at or above the map's per-clip q-quantile; with ties (a map that is
    flat over digital silence, cells a map never reaches) that keeps more than a ``1 - q`` share,
    up to the whole clip. Here exactly ``round((1 - q) * n)`` of a clip's ``n`` cells are kept:
    the cells in decreasing order of the map, cells of equal value in a fixed pseudo-random order
    (``tie_order``), so the mask is deterministic and same-area masks of different methods keep
    the same area. ``q = 0`` keeps every cell, ``q = 1`` none.

    Arguments
    ---------
    map : torch.Tensor
        Upsampled map [batch, time, freq] (any float dtype; compared in float32).
    quantile : float
        The quantile order ``q`` in [0, 1] (0.9 in the paper).
    valid : torch.Tensor, optional
        Boolean [batch, time, freq]: the cells that count (e.g. not the zero padding of a long
        file's last window). The share is taken of each clip's valid cells; other cells are 0.

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
    >>> int(quantile_mask(torch.zeros(1, 4, 5), quantile=0.9).sum())  # ties: still 2 of 20
    2
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
    if valid is not None and valid.shape != map.shape:
        raise ValueError(f"valid must have the map's shape {tuple(map.shape)}, got {valid.shape}")
    flat = map.float().reshape(map.shape[0], -1)  # [B, N]
    if flat.numel() == 0:
        return torch.zeros_like(map, dtype=torch.float32)
    n_cells = flat.shape[1]
    order = tie_order(n_cells).to(flat.device)
    shuffled = flat[:, order]  # ties keep this order in the stable sort below
    if valid is None:
        n_kept = int(kept_cells(n_cells, quantile))
        if 0 < n_kept < n_cells:
            kept_shuffled = _top_cells(shuffled, n_kept)
            mask = torch.empty_like(kept_shuffled)
            mask[:, order] = kept_shuffled
            return mask.float().reshape(map.shape)
        n_kept = torch.tensor(n_kept).expand(flat.shape[0]).to(flat.device)
    else:
        valid_shuffled = valid.reshape(flat.shape[0], -1)[:, order].to(flat.device)
        shuffled = shuffled.masked_fill(~valid_shuffled, float("-inf"))
        n_kept = kept_cells(valid_shuffled.sum(dim=1), quantile).to(flat.device)
    ranking = shuffled.argsort(dim=1, descending=True, stable=True)  # [B, N] positions
    rank = torch.empty_like(ranking)
    rank.scatter_(1, ranking, torch.arange(n_cells, device=flat.device).expand_as(ranking))
    kept_shuffled = rank < n_kept.unsqueeze(1)
    mask = torch.empty_like(kept_shuffled)
    mask[:, order] = kept_shuffled
    return mask.float().reshape(map.shape)


def _top_cells(values: torch.Tensor, n_kept: int) -> torch.Tensor:
    """The ``n_kept`` largest of each row of ``values`` [B, N], ties kept first-come: the same
    cells as a stable descending sort, without sorting (a k-th value and a running count of the
    tied cells; several times faster on 221,103 cells a clip).

    Example
    -------
    >>> _top_cells(torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]]), 2).tolist()
    [[False, True, True, False, False]]
    """
    n_cells = values.shape[1]
    threshold = values.kthvalue(n_cells - n_kept + 1, dim=1, keepdim=True).values
    above = values > threshold
    ties = values == threshold
    wanted = n_kept - above.sum(dim=1, keepdim=True)  # how many tied cells to keep
    return above | (ties & (ties.cumsum(dim=1) <= wanted))
