"""L-MAC (Listenable Maps for Audio Classifiers, Paissan et al., ICML 2024) for FocalNet and ViT.

A decoder reads the frozen classifier's representations at several depths and outputs a mask
logit for every cell of the log-spectrogram; ``mask = sigmoid(logits)``, the interpretation is
``mask * log_spec`` (listenable through the same inverse STFT as every other mask here).

Decoder (``LMACDecoder``), the L-MAC design of SpeechBrain's CNN14 decoder adapted to these
backbones: the representations are given coarsest first, each as ``[B, C_k, H_k, W_k]``. The
coarsest is projected to ``width`` channels (1x1 convolution); then, for each finer one, the
running map is doubled in size (transposed convolution, kernel 4, stride 2), the finer
representation is projected to ``width`` (1x1), resized to the same grid when it is coarser (ViT's
layers all sit on the 14x14 patch grid) and added (skip connection), and a 3x3 convolution mixes
them. A 1x1 convolution gives one logit per cell of the last grid, upsampled bilinearly to the
log-spectrogram's ``[time, freq]`` (time along the image height, as in the image view).

- FocalNet: the output of each of its four stages (its last focal layer) before that stage's
  downsampling (7x7, 14x14, 28x28, 56x56 for a 224 input; the coarsest is the feature grid).
- ViT: four layers evenly spaced in depth (L/4, L/2, 3L/4, L), CLS token dropped, patches on
  their 14x14 grid.

Loss (``lmac_loss``, the authors' L-MAC recipe): ``4 * CE(f(M * X), c) - 0.2 * CE(f((1 - M) * X),
c) + 6.4 * mean|M|`` with ``c`` the classifier's own prediction on ``X`` and ``mean|M|`` the batch
mean of the per-clip mean of ``|M|``. The authors' sparsity prior is ``0.4 * mean|M_b|`` per clip
(``reg_w_l1: 0.4``) *summed* over the batch, i.e. ``0.4 * B * mean|M|``: an effective weight of
``0.4 * 16 = 6.4`` at their batch size 16 (``L1_WEIGHT``). Here that effective weight is fixed,
so the prior keeps the authors' strength at any batch size (theirs also weakened on a short last
batch); at batch 16 the term equals theirs.

Example
-------
>>> decoder = LMACDecoder([64, 32, 16], width=8)
>>> stages = [torch.randn(2, 64, 7, 7), torch.randn(2, 32, 14, 14), torch.randn(2, 16, 28, 28)]
>>> decoder(stages, (431, 513)).shape
torch.Size([2, 431, 513])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

L_IN_WEIGHT = 4.0
L_OUT_WEIGHT = 0.2
# The authors' per-clip weight (``reg_w_l1``) and batch size: their summed prior is the batch mean
# weighted by their product.
AUTHORS_L1_WEIGHT = 0.4
AUTHORS_BATCH_SIZE = 16
L1_WEIGHT = AUTHORS_L1_WEIGHT * AUTHORS_BATCH_SIZE  # 6.4


class LMACDecoder(torch.nn.Module):
    """Mask logits [B, T, F] from representations given coarsest first (see module docstring).

    Arguments
    ---------
    in_channels : sequence of int
        Channels of each representation, coarsest first.
    width : int
        Channels of the decoder.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 128):
        super().__init__()
        if not in_channels:
            raise ValueError("LMACDecoder needs at least one representation")
        self.in_channels = [int(c) for c in in_channels]
        self.width = int(width)
        self.inputs = torch.nn.ModuleList(
            torch.nn.Conv2d(c, self.width, kernel_size=1) for c in self.in_channels
        )
        self.ups = torch.nn.ModuleList(
            torch.nn.ConvTranspose2d(self.width, self.width, kernel_size=4, stride=2, padding=1)
            for _ in self.in_channels[1:]
        )
        self.mix = torch.nn.ModuleList(
            torch.nn.Conv2d(self.width, self.width, kernel_size=3, padding=1)
            for _ in self.in_channels[1:]
        )
        self.out = torch.nn.Conv2d(self.width, 1, kernel_size=1)

    def forward(self, stages: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Mask logits [B, *size] from ``stages`` ([B, C_k, H_k, W_k], coarsest first)."""
        if len(stages) != len(self.inputs):
            raise ValueError(f"{len(stages)} representations for a decoder of {len(self.inputs)}")
        h = F.relu(self.inputs[0](stages[0]))
        for project, up, mix, stage in zip(
            self.inputs[1:], self.ups, self.mix, stages[1:], strict=True
        ):
            h = F.relu(up(h))
            skip = project(stage)
            if skip.shape[-2:] != h.shape[-2:]:
                skip = F.interpolate(skip, size=h.shape[-2:], mode="bilinear", align_corners=False)
            h = F.relu(mix(h + skip))
        logits = F.interpolate(self.out(h), size=size, mode="bilinear", align_corners=False)
        return logits.squeeze(1)

    def card(self) -> dict:
        """What rebuilds it (``build_decoder``): a run's ``model.json`` section."""
        return {"in_channels": list(self.in_channels), "width": self.width}


class CNN14Decoder(torch.nn.Module):
    """L-MAC's decoder for CNN14, the authors' own: SpeechBrain's ``Cnn14.CNN14PSI_stft(dim, 1)``.

    It reads CNN14's four maps (blocks 6, 5, 4, 3: ``dim``, ``dim/2``, ``dim/4``, ``dim/8``
    channels, coarsest first) and returns one mask logit per STFT cell: for a 431-frame clip its
    transposed convolutions give 425 frames of 513 bins. The authors' ``train_lmac.py`` crops
    the log-spectrogram to those frames; here the mask covers the clip's grid, the last frames
    get logit -inf (mask 0: left out of the interpretation, as theirs).

    Arguments
    ---------
    dim : int
        CNN14's embedding size (2048 in SpeechBrain's recipe).

    Example
    -------
    >>> decoder = CNN14Decoder(64)
    >>> stages = [torch.randn(1, 64, 13, 2), torch.randn(1, 32, 13, 2),
    ...           torch.randn(1, 16, 26, 5), torch.randn(1, 8, 53, 10)]
    >>> logits = decoder(stages, (431, 513))
    >>> logits.shape, bool(torch.isinf(logits[:, 425:]).all())
    (torch.Size([1, 431, 513]), True)
    """

    def __init__(self, dim: int = 2048):
        super().__init__()
        from speechbrain.lobes.models.Cnn14 import CNN14PSI_stft

        self.dim = int(dim)
        self.psi = CNN14PSI_stft(self.dim, 1)

    def forward(self, stages: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Mask logits [B, *size] from CNN14's four maps (coarsest first)."""
        if len(stages) != 4:
            raise ValueError(f"CNN14Decoder reads CNN14's 4 maps, got {len(stages)}")
        logits = self.psi(list(stages)).squeeze(1)  # [B, T', 513]
        frames, bins = size
        if logits.shape[-1] != bins:
            raise ValueError(
                f"CNN14PSI_stft gives {logits.shape[-1]} frequency bins, the spectrogram has "
                f"{bins}: it is built for the 1024-point STFT"
            )
        logits = logits[:, :frames]
        if logits.shape[1] < frames:
            logits = F.pad(logits, (0, 0, 0, frames - logits.shape[1]), value=float("-inf"))
        return logits

    def card(self) -> dict:
        """What rebuilds it (``build_decoder``)."""
        return {"kind": "cnn14psi_stft", "dim": self.dim}


def build_decoder(card: dict) -> torch.nn.Module:
    """The decoder a run's ``model.json`` section describes (``card()`` of either decoder).

    Example
    -------
    >>> type(build_decoder({"kind": "cnn14psi_stft", "dim": 64})).__name__
    'CNN14Decoder'
    >>> build_decoder({"in_channels": [8, 4], "width": 4}).card()
    {'in_channels': [8, 4], 'width': 4}
    """
    card = dict(card)
    if card.pop("kind", "stages") == "cnn14psi_stft":
        return CNN14Decoder(**card)
    return LMACDecoder(**card)


def decoder_for(embedding_model, width: int = 128) -> torch.nn.Module:
    """The L-MAC decoder of a backbone (the YAMLs' factory): the authors' ``CNN14PSI_stft`` for a
    backbone whose ``lmac_decoder`` says so (CNN14: ``width`` unused, its size is fixed by the
    embedding), else ``LMACDecoder`` on its stages at ``width``."""
    if getattr(embedding_model, "lmac_decoder", "stages") == "cnn14psi_stft":
        return CNN14Decoder(embedding_model.embedding_size)
    return LMACDecoder(stage_channels(embedding_model), width)


def stage_channels(embedding_model) -> list[int]:
    """The channels of ``embedding_model``'s decoder inputs, found with one forward of the view
    of a blank 5 s log-spectrogram (works for any backbone config)."""
    parameter = next(embedding_model.parameters())
    log_spec = torch.zeros(1, 431, 513, device=parameter.device, dtype=parameter.dtype)
    image = embedding_model.image(log_spec).to(parameter.dtype)
    was_training = embedding_model.training
    embedding_model.eval()
    with torch.no_grad():
        stages = embedding_model(image, with_stages=True)["stages"]
    embedding_model.train(was_training)
    return [int(stage.shape[1]) for stage in stages]


def lmac_loss(
    scores_in: torch.Tensor,
    scores_out: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor,
    score_scale: float,
    l_in_weight: float = L_IN_WEIGHT,
    l_out_weight: float = L_OUT_WEIGHT,
    l1_weight: float = L1_WEIGHT,
) -> dict[str, torch.Tensor]:
    """L-MAC's objective, its terms and the total (see the module docstring).

    Arguments
    ---------
    scores_in, scores_out : torch.Tensor
        Cosine scores [B, n_classes] of ``mask * X`` and ``(1 - mask) * X``.
    mask : torch.Tensor
        [B, T, F] in [0, 1].
    target : torch.Tensor
        [B] the class the classifier predicted on ``X``.
    score_scale : float
        Logits are ``score_scale * cosine`` (the scale the classifier was trained with).
    l_in_weight, l_out_weight : float
        The weights of the two cross-entropies (averaged over the batch).
    l1_weight : float
        The weight of ``l1``, the batch mean of the per-clip mean ``|M|``; the default 6.4 is the
        authors' effective weight at their batch size 16 (see the module docstring).

    Example
    -------
    >>> scores = torch.tensor([[1.0, 0.0]])
    >>> out = lmac_loss(scores, scores, torch.full((1, 2, 2), 0.5), torch.tensor([0]), 1.0)
    >>> ce = torch.nn.functional.cross_entropy(scores, torch.tensor([0]))
    >>> torch.allclose(out["total"], 4 * ce - 0.2 * ce + 6.4 * 0.5)
    True
    >>> L1_WEIGHT == AUTHORS_L1_WEIGHT * AUTHORS_BATCH_SIZE == 6.4
    True
    """
    ce_in = F.cross_entropy(score_scale * scores_in.float(), target)
    ce_out = F.cross_entropy(score_scale * scores_out.float(), target)
    l1 = mask.abs().flatten(1).mean(dim=1).mean()
    total = l_in_weight * ce_in - l_out_weight * ce_out + l1_weight * l1
    return {"total": total, "ce_in": ce_in, "ce_out": ce_out, "l1": l1}
