"""The one classifier module: image view + backbone + cosine head -> scores [B, n_classes].

``AudioClassifier`` is the only place cosine scores are computed: the Brains (training, PIQ,
L-MAC), inference and every study call it, with the feature grid, the by-design map or the
stages on request (``recipes.backbones`` gives their layouts). ``build_embedder`` and
``build_head`` are the factories the YAMLs call (``!apply:recipes.models.build_embedder``).

Example
-------
>>> embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
>>> head = build_head(embedder.embedding_size, n_classes=5)
>>> model = AudioClassifier(embedder, head)
>>> out = model(torch.rand(2, 431, 513), with_map=True)
>>> out["scores"].shape, out["grid"].shape, out["by_design_map"].shape
(torch.Size([2, 5]), torch.Size([2, 64, 7, 7]), torch.Size([2, 7, 7]))
>>> model.scores(torch.rand(2, 431, 513)).shape
torch.Size([2, 5])
"""

from __future__ import annotations

import torch
from speechbrain.lobes.models.ECAPA_TDNN import Classifier

from recipes.backbones import TINY_CNN14, TINY_FOCALNET, TINY_VIT, Backbone, build

HEADS = ("cosine", "linear")

__all__ = [
    "HEADS",
    "TINY_CNN14",
    "TINY_FOCALNET",
    "TINY_VIT",
    "AudioClassifier",
    "build_embedder",
    "build_head",
    "count_parameters",
    "head_kind",
]


build_embedder = build  # the YAMLs' factory: ``!apply:recipes.models.build_embedder``


def build_head(
    input_size: int,
    n_classes: int,
    lin_neurons: int = 192,
    bn_momentum: float = 0.1,
    kind: str = "cosine",
) -> torch.nn.Module:
    """The classifier head: [B, 1, input_size] -> scores [B, 1, n_classes].

    ``kind="cosine"`` (the paper's): SpeechBrain's cosine classifier (``ECAPA_TDNN.Classifier``,
    one linear block of ``lin_neurons``), scores are cosine similarities; ``bn_momentum`` sets
    the momentum of the block's BatchNorm running statistics (0.1 is PyTorch's and SpeechBrain's
    default). ``kind="linear"`` (SpeechBrain's CNN14 recipe): ``torch.nn.Linear(input_size,
    n_classes)``, scores are logits (score scale 1); ``lin_neurons`` and ``bn_momentum`` unused.

    Example
    -------
    >>> build_head(8, 3, kind="linear")(torch.zeros(2, 1, 8)).shape
    torch.Size([2, 1, 3])
    """
    if kind == "linear":
        return torch.nn.Linear(input_size, n_classes)
    if kind != "cosine":
        raise ValueError(f"head must be one of {HEADS}, got {kind!r}")
    head = Classifier(
        input_size=input_size, lin_blocks=1, lin_neurons=lin_neurons, out_neurons=n_classes
    )
    for module in head.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = bn_momentum
    return head


def head_kind(head: torch.nn.Module) -> str:
    """``"linear"`` for a ``torch.nn.Linear`` head, else ``"cosine"``."""
    return "linear" if isinstance(head, torch.nn.Linear) else "cosine"


class AudioClassifier(torch.nn.Module):
    """Log-spectrograms [B, T, F] -> cosine scores [B, n_classes] (and more on request).

    Arguments
    ---------
    embedding_model : torch.nn.Module
        A ``recipes.backbones.Backbone`` (or a DDP wrapper of one).
    classifier : torch.nn.Module
        The cosine head (``build_head``).
    view : recipes.backbones.ImageView, optional
        Whose ``image()`` turns log-spectrograms into images; default ``embedding_model``
        (give the unwrapped backbone when ``embedding_model`` is wrapped for DDP).
    """

    def __init__(self, embedding_model, classifier, view=None):
        super().__init__()
        self.embedding_model = embedding_model
        self.classifier = classifier
        object.__setattr__(self, "_view", view)  # not a submodule: no duplicate weights

    @property
    def backbone(self) -> Backbone:
        """The (unwrapped) registered backbone."""
        model = self._view if self._view is not None else self.embedding_model
        return getattr(model, "module", model)

    def forward(self, log_spec, with_map: bool = False, with_stages: bool = False) -> dict:
        """``scores`` [B, n_classes] and the backbone's outputs (``embedding``, ``grid``, and
        ``by_design_map`` / ``stages`` when asked for); differentiable."""
        image = self.backbone.image(log_spec)
        out = self.embedding_model(image, with_map=with_map, with_stages=with_stages)
        out["scores"] = self.classifier(out["embedding"].unsqueeze(1)).squeeze(1)
        return out

    def scores(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of log-spectrograms [B, T, F], differentiable."""
        return self(log_spec)["scores"]


def count_parameters(*modules: torch.nn.Module) -> int:
    """Total number of parameters of ``modules``."""
    return sum(p.numel() for module in modules for p in module.parameters())
