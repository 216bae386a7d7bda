"""PIQ, Posthoc Interpretation via Quantization (Paissan, Subakan, Ravanelli, 2023).

A post-hoc interpreter that reads a frozen classifier's representation and its predicted class and
decodes a soft mask over the log-spectrogram (paper, section 3.2 "FocalNet-PIQ" / "ViT-PIQ"):

    representation [B, D, 14, 14] -> adapter (residual block) -> down (conv 4x4, stride 2, 14 -> 7)
    -> vector quantisation with the codes of the predicted class only (straight-through)
    -> up (transposed conv 4x4, stride 2, 7 -> 14) -> decoder (strided transposed convolutions,
    ReLU, batch norm) -> mask logits [B, 431, 513] -> sigmoid -> mask in [0, 1]

The interpreter is the authors' own module, SpeechBrain's ``VectorQuantizedPSIFocalNet_Audio``
(its layers are ``VectorQuantizedPSIViT_Audio``'s too), with its quantiser: 71,405,569 parameters
for FocalNet-base (D = 1024) and 40,381,441 for ViT-base (D = 768). The codebook of K codes is split
into ``n_classes`` contiguous blocks by the authors' ``round(linspace(...))`` split (21 and 20
codes, mostly alternating, for K = 1024 and 50 classes; see ``class_code_ranges``); a clip is
quantised with the codes of its predicted class only.

Tensor layouts: representations [B, D, H, W]; masks and log-spectrograms [B, time, freq].

Example
-------
>>> interpreter = PIQInterpreter(input_size=16, n_classes=3, codebook_size=12)
>>> representation = torch.randn(2, 16, 14, 14)
>>> out = interpreter(representation, torch.tensor([0, 2]))
>>> out["mask"].shape, bool(((out["mask"] >= 0) & (out["mask"] <= 1)).all())
(torch.Size([2, 431, 513]), True)
>>> sorted(out["codes"][0].unique().tolist()) <= [0, 1, 2, 3]
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.PIQ import (
    VectorQuantization,
    VectorQuantizedPSIFocalNet_Audio,
    VQEmbedding,
    weights_init,
)
from torch import nn

GRID = 14  # spatial size of the representation the interpreter reads


def piq_grid(grid: torch.Tensor, size: int = GRID) -> torch.Tensor:
    """A backbone's feature grid [B, D, h, w] as the interpreter's input [B, D, size, size].

    FocalNet's 7 x 7 last-stage map is resized bilinearly; ViT's patch grid is already 14 x 14
    and passes unchanged.

    Example
    -------
    >>> piq_grid(torch.randn(2, 64, 7, 7)).shape
    torch.Size([2, 64, 14, 14])
    >>> grid = torch.randn(2, 32, 14, 14)
    >>> torch.equal(piq_grid(grid), grid)
    True
    """
    if tuple(grid.shape[-2:]) == (size, size):
        return grid
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)


def class_code_ranges(codebook_size: int, n_classes: int) -> list[range]:
    """The codebook indices reserved for each class: the authors' split, exactly.

    Code i belongs to class ``round(linspace(-0.5, n_classes - 0.51, codebook_size)[i])``
    (float32, round half to even, as ``torch.round``): contiguous blocks of near-equal size,
    21 and 20 codes, mostly alternating, for K = 1024 and 50 classes.

    Example
    -------
    >>> ranges = class_code_ranges(1024, 50)
    >>> ranges[0], ranges[1], ranges[-1], sorted({len(r) for r in ranges})
    (range(0, 21), range(21, 41), range(1003, 1024), [20, 21])
    """
    if codebook_size < n_classes:
        raise ValueError(
            f"codebook_size ({codebook_size}) must be at least n_classes ({n_classes}): "
            "every class needs its own codes"
        )
    owner = torch.round(torch.linspace(-0.5, n_classes - 0.51, codebook_size)).long()
    counts = torch.bincount(owner, minlength=n_classes).tolist()
    if min(counts) == 0:
        raise ValueError(
            f"codebook_size {codebook_size} leaves a class of {n_classes} without codes: "
            "give more codes"
        )
    starts = [0]
    for count in counts:
        starts.append(starts[-1] + count)
    return [range(starts[label], starts[label + 1]) for label in range(n_classes)]


class ClassPartitionedCodebook(VQEmbedding):
    """SpeechBrain's PIQ codebook (``VQEmbedding``, class-partitioned, no shared codes) that
    also returns the chosen codes.

    ``forward(z_e, labels)`` quantises each vector of ``z_e`` [B, D, H, W] to its nearest code
    among the codes of its clip's class (SpeechBrain's ``straight_through``) and returns
    ``(z_q_st, z_q, codes)``: the quantised map with a straight-through gradient to ``z_e``, the
    same values with the gradient to the codebook, and the chosen code indices [B, H, W].
    """

    def __init__(self, codebook_size: int, dim: int, n_classes: int):
        class_code_ranges(codebook_size, n_classes)  # every class has codes, or ValueError
        super().__init__(codebook_size, dim, numclasses=n_classes, activate_class_partitioning=True)
        self.n_classes = n_classes

    def codes(self, z_e: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The code indices [B, H, W] ``straight_through`` picks for ``z_e`` [B, D, H, W]
        (SpeechBrain's ``VectorQuantization`` with this codebook's partition: its
        ``VQEmbedding.forward`` would use the default of 10 classes and 10 shared codes)."""
        vectors = z_e.permute(0, 2, 3, 1).contiguous()
        return VectorQuantization.apply(
            vectors, self.embedding.weight, labels, self.n_classes, True, self.shared_keys
        )

    def forward(self, z_e: torch.Tensor, labels: torch.Tensor):
        check_labels(labels, self.n_classes)
        z_q_st, z_q = self.straight_through(z_e, labels)
        return z_q_st, z_q, self.codes(z_e, labels)


def check_labels(labels: torch.Tensor, n_classes: int) -> None:
    """ValueError unless every label lies in [0, n_classes) (SpeechBrain's quantiser would give
    an out-of-range label no code of its own and silently pick code 0)."""
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got {labels.tolist()}")


class PIQInterpreter(VectorQuantizedPSIFocalNet_Audio):
    """The PIQ interpreter for a classifier's feature grid: SpeechBrain's
    ``VectorQuantizedPSIFocalNet_Audio`` (adapter, down, class-partitioned codebook, up,
    decoder, the authors' initialisation), whose layers are those of
    ``VectorQuantizedPSIViT_Audio`` too (the two classes differ only in their default width),
    so one class serves every backbone; a state dict of either loads into it.

    Arguments
    ---------
    input_size : int
        D, the channel width of the classifier's representation (1024 FocalNet-base, 768 ViT-base).
    n_classes : int
        Number of classes of the classifier.
    codebook_size : int
        K, the number of codes (1024 in the paper).
    width : int, optional
        Channel width of the interpreter. ``None`` (default): ``input_size``, the authors'
        architecture. A smaller width adds a 1x1 convolution ``project`` to it before
        SpeechBrain's layers (tests and the offline quickstart use this to stay small).
    """

    def __init__(
        self, input_size: int, n_classes: int, codebook_size: int = 1024, width: int | None = None
    ):
        width = input_size if width is None else width
        super().__init__(dim=width, K=codebook_size, numclasses=n_classes, shared_keys=0)
        self.codebook = ClassPartitionedCodebook(codebook_size, width, n_classes)
        self.input_size = input_size
        self.width = width
        self.project = nn.Identity() if width == input_size else nn.Conv2d(input_size, width, 1)
        self.project.apply(weights_init)

    def forward(self, representation: torch.Tensor, labels: torch.Tensor) -> dict:
        """Mask of the clips whose representations [B, D, 14, 14] were classified as ``labels``.

        Returns a dict: ``mask_logits`` and ``mask`` [B, 431, 513]; ``z_e``, ``z_q`` (the
        encoded and quantised maps [B, width, 7, 7], for the VQ losses); ``codes`` [B, 7, 7].
        """
        check_labels(labels, self.codebook.n_classes)
        mask_logits, z_e, z_q = super().forward(self.project(representation), labels)
        return {
            "mask_logits": mask_logits.squeeze(1),
            "mask": torch.sigmoid(mask_logits.squeeze(1)),
            "z_e": z_e,
            "z_q": z_q,
            "codes": self.codebook.codes(z_e.detach(), labels),
        }


def target_mask(log_spec: torch.Tensor, threshold: float = 0.35) -> torch.Tensor:
    """The training target: 1 where ``log_spec`` exceeds ``threshold`` times its clip's maximum.

    Example
    -------
    >>> target_mask(torch.tensor([[[0.0, 1.0], [0.3, 0.5]]]))
    tensor([[[0., 1.],
             [0., 1.]]])
    """
    peak = log_spec.flatten(1).amax(dim=1).view(-1, *([1] * (log_spec.dim() - 1)))
    return (log_spec > threshold * peak).to(log_spec.dtype)


def piq_loss(out: dict, target: torch.Tensor, beta: float = 1.0) -> dict:
    """Bernoulli negative log-likelihood of ``target`` under the mask, plus the VQ losses.

    ``codebook`` = ||sg(z_e) - z_q||^2 moves the codes; ``commitment`` = ||z_e - sg(z_q)||^2
    keeps the encoder near them (weighted by ``beta``). Returns the terms and their ``total``.
    """
    reconstruction = F.binary_cross_entropy_with_logits(out["mask_logits"], target)
    codebook = F.mse_loss(out["z_q"], out["z_e"].detach())
    commitment = F.mse_loss(out["z_e"], out["z_q"].detach())
    return {
        "total": reconstruction + codebook + beta * commitment,
        "reconstruction": reconstruction,
        "codebook": codebook,
        "commitment": commitment,
    }
