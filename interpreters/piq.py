"""PIQ, Posthoc Interpretation via Quantization (Paissan, Subakan, Ravanelli, 2023).

A post-hoc interpreter that reads a frozen classifier's representation and its predicted class and
decodes a soft mask over the log-spectrogram (paper, section 3.2 "FocalNet-PIQ" / "ViT-PIQ"):

    representation [B, D, 14, 14] -> adapter (residual block) -> down (conv 4x4, stride 2, 14 -> 7)
    -> vector quantisation with the codes of the predicted class only (straight-through)
    -> up (transposed conv 4x4, stride 2, 7 -> 14) -> decoder (strided transposed convolutions,
    ReLU, batch norm) -> mask logits [B, 431, 513] -> sigmoid -> mask in [0, 1]

The layers follow the authors' definitions (SpeechBrain's ``VectorQuantizedPSIFocalNet_Audio`` /
``VectorQuantizedPSIViT_Audio``), so the parameter counts are the authors': 71,405,569 for
FocalNet-base (D = 1024) and 40,381,441 for ViT-base (D = 768). The codebook of K codes is split
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


class ResidualBlock(nn.Module):
    """x + BN(conv1x1(ReLU(BN(conv3x3(x))))): the interpreter's adapter."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x + self.block(x)


class ClassPartitionedCodebook(nn.Module):
    """A VQ codebook whose codes are partitioned by class.

    ``forward(z_e, labels)`` quantises each vector of ``z_e`` [B, D, H, W] to its nearest code among
    the codes of its clip's class and returns ``(z_q_st, z_q, codes)``: the quantised map with a
    straight-through gradient to ``z_e``, the same values with the gradient to the codebook, and the
    chosen code indices [B, H, W].
    """

    def __init__(self, codebook_size: int, dim: int, n_classes: int):
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        owner = torch.empty(codebook_size, dtype=torch.long)
        for label, codes in enumerate(class_code_ranges(codebook_size, n_classes)):
            owner[codes.start : codes.stop] = label
        self.register_buffer("code_class", owner, persistent=False)
        self.n_classes = n_classes

    def forward(self, z_e: torch.Tensor, labels: torch.Tensor):
        batch, dim, height, width = z_e.shape
        if labels.min() < 0 or labels.max() >= self.n_classes:
            raise ValueError(f"labels must lie in [0, {self.n_classes}), got {labels.tolist()}")
        vectors = z_e.permute(0, 2, 3, 1).reshape(batch, height * width, dim)
        codebook = self.embedding.weight
        with torch.no_grad():
            distances = torch.cdist(vectors.float(), codebook.float().unsqueeze(0))  # [B, HW, K]
            foreign = self.code_class.unsqueeze(0) != labels.unsqueeze(1)  # [B, K]
            distances.masked_fill_(foreign.unsqueeze(1), float("inf"))
            codes = distances.argmin(dim=2)  # [B, H*W]
        z_q = codebook[codes].reshape(batch, height, width, dim).permute(0, 3, 1, 2)
        z_q_st = z_e + (z_q - z_e).detach()
        return z_q_st, z_q, codes.reshape(batch, height, width)


class PIQInterpreter(nn.Module):
    """The PIQ interpreter for a FocalNet / ViT representation.

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
        architecture. A smaller width adds a 1x1 convolution that projects the representation
        to it (tests and the offline quickstart use this to stay small).
    """

    def __init__(
        self, input_size: int, n_classes: int, codebook_size: int = 1024, width: int | None = None
    ):
        super().__init__()
        self.input_size = input_size
        width = input_size if width is None else width
        self.width = width
        self.project = nn.Identity() if width == input_size else nn.Conv2d(input_size, width, 1)
        self.adapter = ResidualBlock(width)
        self.down = nn.Conv2d(width, width, 4, 2, 1)
        self.codebook = ClassPartitionedCodebook(codebook_size, width, n_classes)
        self.up = nn.ConvTranspose2d(width, width, 4, 2, 1)
        layers = []
        for kernel, stride in [(3, (4, 5)), ((4, 1), 2), ((4, 1), 2), ((4, 2), 2)]:
            layers += [nn.ConvTranspose2d(width, width, kernel, stride, 1)]
            layers += [nn.ReLU(), nn.BatchNorm2d(width)]
        layers.append(nn.ConvTranspose2d(width, 1, (10, 8), 1, 1))
        self.decoder = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, representation: torch.Tensor, labels: torch.Tensor) -> dict:
        """Mask of the clips whose representations [B, D, 14, 14] were classified as ``labels``.

        Returns a dict: ``mask_logits`` and ``mask`` [B, 431, 513]; ``z_e``, ``z_q`` (the
        encoded and quantised maps [B, width, 7, 7], for the VQ losses); ``codes`` [B, 7, 7].
        """
        z_e = self.down(self.adapter(self.project(representation)))
        z_q_st, z_q, codes = self.codebook(z_e, labels)
        mask_logits = self.decoder(self.up(z_q_st)).squeeze(1)
        return {
            "mask_logits": mask_logits,
            "mask": torch.sigmoid(mask_logits),
            "z_e": z_e,
            "z_q": z_q,
            "codes": codes,
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
