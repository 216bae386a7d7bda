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

from recipes.backbones import TINY_FOCALNET, TINY_VIT, Backbone, build

__all__ = [
    "TINY_FOCALNET",
    "TINY_VIT",
    "AudioClassifier",
    "build_embedder",
    "build_head",
    "count_parameters",
]


build_embedder = build  # the YAMLs' factory: ``!apply:recipes.models.build_embedder``


def build_head(
    input_size: int, n_classes: int, lin_neurons: int = 192, bn_momentum: float = 0.1
) -> torch.nn.Module:
    """SpeechBrain's cosine classifier (``ECAPA_TDNN.Classifier``, one linear block).

    Outputs cosine similarities [B, 1, n_classes] for inputs [B, 1, input_size].
    ``bn_momentum`` sets the momentum of the block's BatchNorm running statistics (0.1 is
    PyTorch's and SpeechBrain's default).
    """
    head = Classifier(
        input_size=input_size, lin_blocks=1, lin_neurons=lin_neurons, out_neurons=n_classes
    )
    for module in head.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = bn_momentum
    return head


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
