"""Backbones (HuggingFace FocalNet / ViT), their embedding wrappers and the cosine head.

``build_backbone`` loads the pretrained weights with ``from_pretrained`` (``pretrained=True``) or
builds the same architecture with random weights from a config shipped in ``recipes/configs/``
(``pretrained=False``, no network); the config's keys can be overridden, so tests and the
quickstart use tiny models.

The wrappers return a dict for a batch of images [B, 3, 224, 224]:

- ``embedding`` [B, D]: FocalNet's last-stage map averaged over space (D = 1024 for base); ViT's
  last hidden state averaged over all tokens, CLS included (D = 768), as the authors' code;
- ``representation``: FocalNet's last-stage map [B, D, 7, 7]; ViT's last hidden state
  [B, 197, D] (what the PIQ interpreter reads);
- ``raw_map`` (when ``with_map=True``): FocalNet's modulator h(.) of the last layer of the last
  stage [B, D, 7, 7] (a forward hook on ``projection_context``); ViT's last-layer attentions
  [B, heads, 197, 197]. ``interpreters.maps`` turns it into the interpretation map.

Example
-------
>>> backbone = build_backbone("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
>>> embedder = FocalNetEmbedder(backbone)
>>> out = embedder(torch.randn(2, 3, 224, 224), with_map=True)
>>> out["embedding"].shape, out["representation"].shape, out["raw_map"].shape
(torch.Size([2, 64]), torch.Size([2, 64, 7, 7]), torch.Size([2, 64, 7, 7]))
>>> head = build_head(embedder.embedding_size, n_classes=5)
>>> head(out["embedding"].unsqueeze(1)).squeeze(1).shape
torch.Size([2, 5])
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from transformers import FocalNetBackbone, FocalNetConfig, ViTConfig, ViTModel

from recipes.features import to_image

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
BACKBONES = {
    "focalnet": (FocalNetConfig, "focalnet-base.json"),
    "vit": (ViTConfig, "vit-base-patch16-224.json"),
}
# Tiny architectures for tests and the offline quickstart (random init).
TINY_FOCALNET = {"embed_dim": 8, "depths": [1, 1, 1, 1]}
TINY_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def backbone_config(backbone: str, config_overrides: dict | None = None):
    """The shipped config of ``backbone`` ("focalnet" or "vit") with ``config_overrides`` applied.

    For FocalNet, overriding ``embed_dim`` or ``depths`` without ``hidden_sizes`` derives
    ``hidden_sizes`` as the usual doubling per stage (``embed_dim * 2 ** i``, i = 1..stages-1).

    Example
    -------
    >>> backbone_config("focalnet", {"embed_dim": 16}).hidden_sizes
    [32, 64, 128]
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
    config_class, filename = BACKBONES[backbone]
    with open(CONFIG_DIR / filename) as handle:
        values = json.load(handle)
    overrides = dict(config_overrides or {})
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ValueError(
            f"Unknown key(s) {unknown} in backbone_config for {backbone}; "
            f"allowed keys are those of {CONFIG_DIR / filename}: {sorted(values)}"
        )
    values.update({key: _plain(value) for key, value in overrides.items()})
    if backbone == "focalnet" and "hidden_sizes" not in overrides:
        n_stages = len(values["depths"])
        values["hidden_sizes"] = [values["embed_dim"] * 2**i for i in range(1, n_stages)]
    values.pop("model_type")
    return config_class(**values)


def _plain(value):
    """YAML lists arrive as ruamel sequences; transformers wants plain lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def build_backbone(
    backbone: str,
    source: str | None = None,
    pretrained: bool = True,
    cache_dir: str | None = None,
    config_overrides: dict | None = None,
) -> torch.nn.Module:
    """A FocalNet (``FocalNetBackbone``) or ViT (``ViTModel`` with pooler) backbone.

    Arguments
    ---------
    backbone : str
        "focalnet" or "vit".
    source : str
        HuggingFace model id or local folder (``microsoft/focalnet-base``,
        ``google/vit-base-patch16-224``); used when ``pretrained`` is True.
    pretrained : bool
        True: ``from_pretrained(source, cache_dir=cache_dir)``. False: the shipped config, random
        weights, no network.
    cache_dir : str, optional
        Where HuggingFace keeps downloaded weights.
    config_overrides : dict, optional
        Keys of the shipped config to change (only with ``pretrained=False``).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
    if pretrained:
        if config_overrides:
            raise ValueError(
                "backbone_config overrides change the architecture and only apply with "
                "pretrained: False (pretrained weights fix the architecture)"
            )
        if not source:
            raise ValueError("pretrained: True needs `source` (a HuggingFace id or a folder)")
        if backbone == "focalnet":
            return FocalNetBackbone.from_pretrained(source, cache_dir=cache_dir)
        return ViTModel.from_pretrained(
            source, cache_dir=cache_dir, add_pooling_layer=True, attn_implementation="sdpa"
        )
    config = backbone_config(backbone, config_overrides)
    if backbone == "focalnet":
        return FocalNetBackbone(config)
    # Fused attention in every layer; the map's one row is computed aside (ViTEmbedder).
    config._attn_implementation = "sdpa"
    return ViTModel(config, add_pooling_layer=True)


def load_backbone_state(backbone: torch.nn.Module, state: dict) -> None:
    """Loads a backbone's state dict, written by this transformers version or an older one.

    The state dict of a HuggingFace backbone saved with transformers 4.x (SpeechBrain's released
    ``embedding_model.ckpt``) names ViT's layers ``encoder.layer.N.attention.attention.query``,
    ``intermediate.dense``, ...; transformers 5 renamed them (``layers.N.attention.q_proj``,
    ``mlp.fc1``, ...) and converts old names only inside ``from_pretrained``. So a state dict
    whose keys are not the model's goes through ``from_pretrained`` of a temporary local folder
    (the model's config and the weights as safetensors), which applies transformers' own
    conversion; every weight must land, or ValueError names what did not.
    """
    expected = set(backbone.state_dict())
    if set(state) == expected:
        backbone.load_state_dict(state)
        return
    import tempfile

    from safetensors.torch import save_file

    kwargs = {"add_pooling_layer": True} if isinstance(backbone, ViTModel) else {}
    with tempfile.TemporaryDirectory() as folder:
        backbone.config.save_pretrained(folder)
        tensors = {key: value.detach().clone().contiguous() for key, value in state.items()}
        save_file(tensors, str(Path(folder) / "model.safetensors"))
        converted, info = type(backbone).from_pretrained(folder, output_loading_info=True, **kwargs)
    problems = {
        name: sorted(info.get(name) or ())
        for name in ("missing_keys", "unexpected_keys", "mismatched_keys")
        if info.get(name)
    }
    if problems:
        summary = "; ".join(
            f"{len(keys)} {name.replace('_', ' ')} (e.g. {keys[0]})"
            for name, keys in problems.items()
        )
        raise ValueError(
            f"the backbone weights do not fit the {type(backbone).__name__}: {summary}"
        )
    backbone.load_state_dict(converted.state_dict())


class ImageView:
    """The backbone's view of a log-spectrogram: ``recipes.features.to_image`` with the model's
    own settings, recorded in the run's model card:

    - ``image_antialias``: whether the shrinking to 224 x 224 low-pass filters;
    - ``image_normalisation``: None (the authors': the log-spectrogram as it is) or
      ``(mean, std)``: the image is standardised, ``(image - mean) / std``. Models trained from
      random weights need it: log-spectrogram cells are mostly near 0 (and exactly 0 in digital
      silence), so a patch's projection is close to its bias alone, and the LayerNorm that
      follows it divides by that tiny spread: gradients of 1e7 and more at initialisation.
    """

    image_antialias = False
    image_normalisation = None

    def image(self, log_spec: torch.Tensor) -> torch.Tensor:
        """[B, T, F] log-spectrograms -> [B, 3, 224, 224] images."""
        image = to_image(log_spec, antialias=self.image_antialias)
        if self.image_normalisation is not None:
            mean, std = self.image_normalisation
            image = (image - mean) / std
        return image

    def _set_view(self, image_antialias: bool, image_normalisation) -> None:
        self.image_antialias = bool(image_antialias)
        if image_normalisation is not None:
            mean, std = (float(value) for value in image_normalisation)
            if not std > 0:
                raise ValueError(f"image_normalisation's std must be > 0, got {std}")
            image_normalisation = (mean, std)
        self.image_normalisation = image_normalisation


class FocalNetEmbedder(ImageView, torch.nn.Module):
    """Embedding, representation and modulator of a ``FocalNetBackbone``.

    The modulator is captured by a forward hook on the ``projection_context`` (h in the paper's
    eq. 2) of the last layer of the last stage.
    """

    kind = "focalnet"

    def __init__(
        self, backbone: torch.nn.Module, image_antialias: bool = False, image_normalisation=None
    ):
        super().__init__()
        self.backbone = backbone
        self._set_view(image_antialias, image_normalisation)
        self._modulator = None
        # FocalNetModel's final layernorm feeds its pooled output, which FocalNetBackbone never
        # uses: frozen so that DDP does not wait for its gradients (it is still counted and
        # checkpointed, as in the authors' model).
        backbone.focalnet.layernorm.requires_grad_(False)
        last_layer = backbone.focalnet.encoder.stages[-1].layers[-1]
        last_layer.modulation.projection_context.register_forward_hook(self._keep_modulator)

    def _keep_modulator(self, module, inputs, output):
        self._modulator = output

    @property
    def embedding_size(self) -> int:
        return self.backbone.num_features[-1]

    def forward(self, image: torch.Tensor, with_map: bool = False, with_stages: bool = False):
        """See the module docstring.

        ``with_stages`` adds ``stages``: the last hidden state of each resolution, coarsest
        first, each [B, C, H, W] (for a 224 input: 7x7, 14x14, 28x28, 56x56; L-MAC's input).
        """
        out = self.backbone(pixel_values=image, output_hidden_states=with_stages)
        feature_map = out.feature_maps[-1]
        result = {"embedding": feature_map.mean(dim=(2, 3)), "representation": feature_map}
        if with_map:
            result["raw_map"] = self._modulator
        if with_stages:
            by_size = {}
            for hidden in out.hidden_states:  # [B, H * W, C], fine to coarse
                side = math.isqrt(hidden.shape[1])
                by_size[side] = hidden.transpose(1, 2).reshape(hidden.shape[0], -1, side, side)
            result["stages"] = [by_size[side] for side in sorted(by_size)]
        self._modulator = None
        return result


class ViTEmbedder(ImageView, torch.nn.Module):
    """Embedding, representation and last-layer CLS attention of a ``ViTModel``.

    Every layer runs fused attention (SDPA), which never materialises attention probabilities.
    With ``with_map`` a forward pre-hook on the last layer's attention recomputes the one row the
    map needs from that layer's own query and key: ``softmax(q_cls K^T / sqrt(d))`` per head,
    ``[B, heads, 1, 1 + N]`` as ``raw_map`` (``interpreters.maps.attention_map`` reads row 0).
    """

    kind = "vit"

    def __init__(
        self, backbone: torch.nn.Module, image_antialias: bool = False, image_normalisation=None
    ):
        super().__init__()
        self.backbone = backbone
        self._set_view(image_antialias, image_normalisation)
        # The embedding averages the last hidden state; the pooler is kept so that checkpoints
        # and parameter counts match the paper's, but it is never used, hence frozen: DDP
        # would otherwise wait for its gradients.
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler.requires_grad_(False)
        self._want_map, self._cls_attention = False, None
        last_attention = backbone.layers[-1].attention
        last_attention.register_forward_pre_hook(self._keep_cls_attention, with_kwargs=True)

    def _keep_cls_attention(self, module, args, kwargs):
        if not self._want_map:
            return
        hidden = args[0] if args else kwargs["hidden_states"]  # [B, 1 + N, D], normalised
        batch, heads, dim = hidden.shape[0], module.num_attention_heads, module.head_dim
        query = module.q_proj(hidden[:, :1]).view(batch, 1, heads, dim).transpose(1, 2)
        key = module.k_proj(hidden).view(batch, -1, heads, dim).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(2, 3)) * module.scaling
        self._cls_attention = torch.softmax(scores.float(), dim=-1)  # [B, heads, 1, 1 + N]

    @property
    def embedding_size(self) -> int:
        return self.backbone.config.hidden_size

    def forward(self, image: torch.Tensor, with_map: bool = False, with_stages: bool = False):
        """See the module docstring.

        ``with_stages`` adds ``stages``: the patch tokens (CLS dropped) of four layers evenly
        spaced in depth (L, 3L/4, L/2, L/4; fewer when the model has fewer layers), deepest
        first, each [B, D, 14, 14] for a 224 input (L-MAC's input).
        """
        self._want_map, self._cls_attention = with_map, None
        try:
            out = self.backbone(pixel_values=image, output_hidden_states=with_stages)
        finally:
            self._want_map = False
        hidden = out.last_hidden_state
        result = {"embedding": hidden.mean(dim=1), "representation": hidden}
        if with_map:
            result["raw_map"] = self._cls_attention
            self._cls_attention = None
        if with_stages:
            n_layers = len(out.hidden_states) - 1
            layers = dict.fromkeys(round(n_layers * k / 4) for k in (4, 3, 2, 1))
            result["stages"] = [
                _patch_grid(out.hidden_states[index]) for index in layers if index > 0
            ]
        return result


def _patch_grid(hidden: torch.Tensor) -> torch.Tensor:
    """ViT tokens [B, 1 + N, D] -> patches on their square grid [B, D, sqrt(N), sqrt(N)]."""
    patches = hidden[:, 1:]
    side = math.isqrt(patches.shape[1])
    return patches.transpose(1, 2).reshape(hidden.shape[0], -1, side, side)


EMBEDDERS = {"focalnet": FocalNetEmbedder, "vit": ViTEmbedder}


def build_embedder(
    backbone: str,
    source: str | None = None,
    pretrained: bool = True,
    cache_dir: str | None = None,
    config_overrides: dict | None = None,
    image_antialias: bool = False,
    image_normalisation=None,
) -> torch.nn.Module:
    """``build_backbone`` wrapped in its embedder (``FocalNetEmbedder`` / ``ViTEmbedder``).

    ``image_antialias`` and ``image_normalisation`` ((mean, std) or None) set the embedder's
    image view (``embedder.image(log_spec)``, see ``ImageView``; the defaults are the authors').
    """
    model = build_backbone(backbone, source, pretrained, cache_dir, config_overrides)
    return EMBEDDERS[backbone](
        model, image_antialias=image_antialias, image_normalisation=image_normalisation
    )


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


def count_parameters(*modules: torch.nn.Module) -> int:
    """Total number of parameters of ``modules``."""
    return sum(p.numel() for module in modules for p in module.parameters())
