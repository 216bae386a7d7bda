"""L2I, Listen to Interpret (Parekh et al., NeurIPS 2022), on SpeechBrain's ``L2I`` modules.

An NMF dictionary ``W`` [F, K] (``NMFDecoderAudio``: K non-negative spectral components) is
learned first on the training fold's log-spectrograms ``log1p(|STFT|)``, as the authors'
``train_nmf.py``: an ``NMFEncoder`` gives activations, ``W`` rebuilds the log-spectrogram, the
mean squared error trains both. Then, with ``W`` frozen, ``Psi`` predicts NMF time activations
``H`` [B, K, T] from three of the frozen classifier's representations, and ``Theta`` (attention
pooling over time, a linear layer, softmax) classifies ``H``; the loss is the authors'
(``train_l2i.py``): ``alpha * mean (W H - X)^2 + beta * mean |H| + mean(softmax(f(x)) *
-log Theta(H))``, the last term making ``Theta`` agree with the classifier.

The interpretation of a clip predicted as class ``c``: each component's relevance is
``r_k = theta_ck z_k / max_j |theta_cj z_j|`` (``z = `` Theta's time pooling of ``H``); the
components with ``r_k > relevance_threshold`` (0.2, theirs) are kept, and the mask is their
share of the rebuilt spectrogram, ``M = W_L H_L / (W H + eps)`` in [0, 1] [B, T, F]: the
authors' interpretation ``M * log1p|X|`` (their ``X_int``, in the log domain), listenable
through the same inverse STFT as every other mask here.

``Psi`` reads three representations, coarsest first, on CNN14's layout (blocks 6, 5, 4: the
first two on one grid [h, w], the third on [2h, 2w + 1]); ``l2i_stages`` resizes the stages of
any backbone (FocalNet's, ViT's) bilinearly to that layout, CNN14's pass unchanged. Time runs
along the grids' first axis (the image height for FocalNet and ViT).

Example
-------
>>> interpreter = L2IInterpreter([16, 8, 4], n_classes=3, n_components=6)
>>> stages = [torch.rand(2, 16, 13, 2), torch.rand(2, 8, 13, 2), torch.rand(2, 4, 26, 5)]
>>> out = interpreter(stages)
>>> out["activations"].shape, out["theta"].shape, out["reconstruction"].shape
(torch.Size([2, 6, 431]), torch.Size([2, 3]), torch.Size([2, 431, 513]))
>>> mask = interpreter.mask(out["activations"], torch.tensor([0, 2]))
>>> mask.shape, bool(((mask >= 0) & (mask <= 1)).all())
(torch.Size([2, 431, 513]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.L2I import NMFDecoderAudio, NMFEncoder, Psi, Theta

EPS = 1e-10  # the authors' denominator guard


def l2i_stages(stages: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The three coarsest representations (``stages``, coarsest first) on ``Psi``'s layout:
    the second resized to the first's grid [h, w], the third to [2h, 2w + 1].

    Example
    -------
    >>> grids = [torch.rand(1, 8, 7, 7), torch.rand(1, 4, 14, 14), torch.rand(1, 2, 28, 28)]
    >>> [tuple(s.shape[2:]) for s in l2i_stages(grids)]
    [(7, 7), (7, 7), (14, 15)]
    """
    if len(stages) < 3:
        raise ValueError(f"L2I reads three representations, the backbone gives {len(stages)}")
    first, second, third = stages[:3]
    height, width = first.shape[2:]
    sizes = [(height, width), (height, width), (2 * height, 2 * width + 1)]
    return [
        stage
        if tuple(stage.shape[2:]) == size
        else F.interpolate(stage, size=size, mode="bilinear", align_corners=False)
        for stage, size in zip((first, second, third), sizes, strict=True)
    ]


class L2IInterpreter(torch.nn.Module):
    """SpeechBrain's ``Psi``, ``Theta``, ``NMFDecoderAudio`` (the dictionary ``W``) and
    ``NMFEncoder`` (used only while the dictionary is learned), see the module docstring.

    Arguments
    ---------
    in_channels : sequence of int
        Channels of the three coarsest representations, coarsest first (the last the smallest,
        as ``Psi`` needs).
    n_classes : int
        The classifier's classes.
    n_components : int
        K, the NMF components (100, theirs).
    n_freq : int
        Frequency bins of the log-spectrogram (513).
    frames : int
        Frames of a clip (431 for 5 s).
    relevance_threshold : float
        Components whose relevance exceeds it make the interpretation (0.2, theirs).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        n_classes: int,
        n_components: int = 100,
        n_freq: int = 513,
        frames: int = 431,
        relevance_threshold: float = 0.2,
    ):
        super().__init__()
        self.in_channels = [int(c) for c in in_channels][:3]
        if self.in_channels[2] != min(self.in_channels):
            raise ValueError(
                f"L2I's Psi needs the third representation to be the narrowest, got "
                f"{self.in_channels}"
            )
        self.n_classes, self.n_components = int(n_classes), int(n_components)
        self.n_freq, self.frames = int(n_freq), int(frames)
        self.relevance_threshold = float(relevance_threshold)
        self.psi = Psi(self.n_components, self.frames, self.in_channels)
        self.theta = Theta(self.n_components, self.frames, self.n_classes)
        self.nmf_decoder = NMFDecoderAudio(self.n_components, self.n_freq, device="cpu")
        self.nmf_encoder = NMFEncoder(self.n_freq, self.n_components)
        # The dictionary and its encoder are trained only while the dictionary is learned
        # (``recipes.l2i``), frozen otherwise (so DDP never waits for their gradients).
        self.nmf_decoder.requires_grad_(False)
        self.nmf_encoder.requires_grad_(False)
        # Set once the dictionary is learned (checkpointed with it).
        self.register_buffer("dictionary_learned", torch.tensor(False))

    def dictionary(self) -> torch.Tensor:
        """W [F, K], non-negative."""
        return self.nmf_decoder.return_W()

    def nmf_reconstruction(self, log_spec: torch.Tensor) -> torch.Tensor:
        """The NMF autoencoder's rebuilt log-spectrogram [B, T, F] (dictionary learning)."""
        activations = self.nmf_encoder(log_spec.transpose(1, 2))
        return self.nmf_decoder(activations).transpose(1, 2)

    def forward(self, stages: Sequence[torch.Tensor]) -> dict:
        """``activations`` H [B, K, T], ``theta`` (Theta's class probabilities [B, C]) and
        ``reconstruction`` W H [B, T, F] from the classifier's stages (coarsest first)."""
        activations = self.psi(l2i_stages(stages))
        return {
            "activations": activations,
            "theta": self.theta(activations),
            "reconstruction": self.nmf_decoder(activations).transpose(1, 2),
        }

    def relevance(self, activations: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """r [B, K]: each component's relevance to class ``labels`` (see the module docstring)."""
        pooled = self.theta.hard_att(activations).squeeze(2)  # [B, K]
        weights = self.theta.classifier[0].weight[labels]  # [B, K]
        contribution = weights * pooled
        peak = contribution.abs().amax(dim=1, keepdim=True)
        return contribution / peak.clamp_min(torch.finfo(contribution.dtype).tiny)

    def mask(self, activations: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """M [B, T, F] in [0, 1]: the relevant components' share of ``W H``."""
        activations = F.relu(activations)
        selected = (self.relevance(activations, labels) > self.relevance_threshold).to(
            activations.dtype
        )
        dictionary = self.dictionary()
        everything = torch.einsum("fk,bkt->btf", dictionary, activations)
        kept = torch.einsum("fk,bkt->btf", dictionary, activations * selected.unsqueeze(2))
        return (kept / (everything + EPS)).clamp(0.0, 1.0)

    def card(self) -> dict:
        """What rebuilds it: a run's ``model.json`` section."""
        return {
            "in_channels": list(self.in_channels),
            "n_classes": self.n_classes,
            "n_components": self.n_components,
            "n_freq": self.n_freq,
            "frames": self.frames,
            "relevance_threshold": self.relevance_threshold,
        }


def l2i_loss(
    out: dict,
    log_spec: torch.Tensor,
    classifier_logits: torch.Tensor,
    alpha: float = 10.0,
    beta: float = 0.8,
) -> dict:
    """The authors' L2I objective (module docstring), its terms and ``total``.

    ``classifier_logits`` are the frozen classifier's logits (cosine scores times its training
    scale); ``alpha`` weights the NMF reconstruction, ``beta`` the L1 of the activations.

    Example
    -------
    >>> out = {"reconstruction": torch.zeros(1, 2, 2), "activations": torch.ones(1, 3, 2),
    ...        "theta": torch.tensor([[0.5, 0.5]])}
    >>> terms = l2i_loss(out, torch.ones(1, 2, 2), torch.zeros(1, 2))
    >>> round(float(terms["total"]), 4)  # 10 * 1 + 0.8 * 1 + 0.5 * log 2
    11.1466
    """
    reconstruction = F.mse_loss(out["reconstruction"], log_spec)
    sparsity = out["activations"].abs().mean()
    fidelity = (F.softmax(classifier_logits.float(), dim=1) * -torch.log(out["theta"] + EPS)).mean()
    return {
        "total": alpha * reconstruction + beta * sparsity + fidelity,
        "reconstruction": reconstruction,
        "sparsity": sparsity,
        "fidelity": fidelity,
    }
