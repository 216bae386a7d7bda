"""The backbone registry: one class per backbone, the same output layout for every consumer.

Each class in ``BACKBONES`` wraps a HuggingFace model (kept as ``self.backbone``, so checkpoints
name its weights ``backbone.*``) and owns what differs between backbones: its shipped config
(``recipes/configs/``), construction from that config (random weights, no network) or from
pretrained weights, loading of released state dicts, its last stage (for the randomisation
check) and the layouts it returns for a batch of images [B, 3, 224, 224]:

- ``embedding`` [B, D]: FocalNet's last-stage map averaged over space (D = 1024 for base); ViT's
  last hidden state averaged over all tokens, CLS included (D = 768), as the authors' code;
- ``grid`` [B, D, h, w]: the feature grid post-hoc methods read (PIQ, Grad-CAM): FocalNet's
  last-stage map (7 x 7); ViT's patch tokens of the last hidden state on their 14 x 14 grid;
- ``by_design_map`` [B, h, w] (``with_map=True``; None for a backbone without one): FocalNet's
  modulation map of the last layer (paper, section 2.4), ViT's CLS attention averaged over heads
  (section 3.2); ``raw_map`` is what it was computed from (the modulator, the attention row);
- ``stages`` (``with_stages=True``): representations at several depths, coarsest first, each
  [B, C, H, W] (L-MAC's decoder input).

Nothing outside this module switches on a backbone's name: consumers read these keys, and the
registry's ``label`` names a backbone in tables.

Example
-------
>>> backbone = build("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
>>> out = backbone(torch.randn(2, 3, 224, 224), with_map=True)
>>> out["embedding"].shape, out["grid"].shape, out["by_design_map"].shape
(torch.Size([2, 64]), torch.Size([2, 64, 7, 7]), torch.Size([2, 7, 7]))
>>> vit = build("vit", pretrained=False, config_overrides=TINY_VIT)
>>> vit(torch.randn(1, 3, 224, 224), with_map=True)["by_design_map"].shape
torch.Size([1, 14, 14])
>>> sorted(BACKBONES), BACKBONES["vit"].label
(['focalnet', 'vit'], 'ViT')
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import transformers

from interpreters.maps import attention_map, modulation_map
from recipes.features import to_image

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# Tiny architectures for tests and the offline quickstart (random init).
TINY_FOCALNET = {"embed_dim": 8, "depths": [1, 1, 1, 1]}
TINY_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def _plain(value):
    """YAML lists arrive as ruamel sequences; transformers wants plain lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


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


class Backbone(ImageView, torch.nn.Module):
    """What every registered backbone provides (see the module docstring).

    A subclass sets ``name``, ``label``, ``config_class`` and ``config_file`` and implements
    ``_from_config``, ``_from_pretrained``, ``owns_state``, ``last_stage``, ``embedding_size``
    and ``forward``.
    """

    name = ""
    label = ""
    config_class = None
    config_file = ""
    has_by_design_map = True

    def __init__(self, model: torch.nn.Module, image_antialias=False, image_normalisation=None):
        super().__init__()
        self.backbone = model
        self._set_view(image_antialias, image_normalisation)

    # ------------------------------------------------------------ building ---
    @classmethod
    def config(cls, config_overrides: dict | None = None):
        """The shipped config with ``config_overrides`` applied; ValueError for an unknown key."""
        with open(CONFIG_DIR / cls.config_file) as handle:
            values = json.load(handle)
        overrides = dict(config_overrides or {})
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise ValueError(
                f"Unknown key(s) {unknown} in backbone_config for {cls.name}; allowed keys are "
                f"those of {CONFIG_DIR / cls.config_file}: {sorted(values)}"
            )
        values.update({key: _plain(value) for key, value in overrides.items()})
        cls._derive(values, overrides)
        values.pop("model_type")
        return cls.config_class(**values)

    @classmethod
    def _derive(cls, values: dict, overrides: dict) -> None:
        """Fills config values that follow from overridden ones (in place)."""

    @classmethod
    def _from_config(cls, config) -> torch.nn.Module:
        raise NotImplementedError

    @classmethod
    def _from_pretrained(cls, source: str, cache_dir: str | None) -> torch.nn.Module:
        raise NotImplementedError

    @classmethod
    def owns_state(cls, state: dict) -> bool:
        """Whether a released state dict (its keys) is this backbone's."""
        raise NotImplementedError

    def last_stage(self) -> torch.nn.Module:
        """The last stage (FocalNet) or layer (ViT): what the randomisation check re-initialises."""
        raise NotImplementedError

    @property
    def embedding_size(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------- loading ---
    def load_state(self, state: dict) -> None:
        """Loads a HuggingFace model's state dict, written by this transformers version or an
        older one.

        The state dict of a HuggingFace backbone saved with transformers 4.x (SpeechBrain's
        released ``embedding_model.ckpt``) names ViT's layers ``encoder.layer.N.attention.
        attention.query``, ...; transformers 5 renamed them and converts old names only inside
        ``from_pretrained``. So a state dict whose keys are not the model's goes through
        ``from_pretrained`` of a temporary local folder (the model's config and the weights as
        safetensors), which applies transformers' own conversion; every weight must land, or
        ValueError names what did not.
        """
        model = self.backbone
        if set(state) == set(model.state_dict()):
            model.load_state_dict(state)
            return
        import tempfile

        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory() as folder:
            model.config.save_pretrained(folder)
            tensors = {key: value.detach().clone().contiguous() for key, value in state.items()}
            save_file(tensors, str(Path(folder) / "model.safetensors"))
            converted, info = type(model).from_pretrained(
                folder, output_loading_info=True, **self._pretrained_kwargs()
            )
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
                f"the backbone weights do not fit the {type(model).__name__}: {summary}"
            )
        model.load_state_dict(converted.state_dict())

    @classmethod
    def _pretrained_kwargs(cls) -> dict:
        return {}


class FocalNet(Backbone):
    """A ``transformers.FocalNetBackbone``; its modulator is captured by a forward hook on the
    ``projection_context`` (h in the paper's eq. 2) of the last layer of the last stage."""

    name = "focalnet"
    label = "FocalNet"
    config_class = transformers.FocalNetConfig
    config_file = "focalnet-base.json"

    def __init__(self, model, image_antialias=False, image_normalisation=None):
        super().__init__(model, image_antialias, image_normalisation)
        self._modulator = None
        # FocalNetModel's final layernorm feeds its pooled output, which FocalNetBackbone never
        # uses: frozen so that DDP does not wait for its gradients (it is still counted and
        # checkpointed, as in the authors' model).
        model.focalnet.layernorm.requires_grad_(False)
        last_layer = model.focalnet.encoder.stages[-1].layers[-1]
        last_layer.modulation.projection_context.register_forward_hook(self._keep_modulator)

    @classmethod
    def _derive(cls, values, overrides):
        """Overriding ``embed_dim`` or ``depths`` without ``hidden_sizes`` derives
        ``hidden_sizes`` as the usual doubling per stage (``embed_dim * 2 ** i``)."""
        if "hidden_sizes" not in overrides:
            n_stages = len(values["depths"])
            values["hidden_sizes"] = [values["embed_dim"] * 2**i for i in range(1, n_stages)]

    @classmethod
    def _from_config(cls, config):
        return transformers.FocalNetBackbone(config)

    @classmethod
    def _from_pretrained(cls, source, cache_dir):
        return transformers.FocalNetBackbone.from_pretrained(source, cache_dir=cache_dir)

    @classmethod
    def owns_state(cls, state):
        return any(key.startswith("focalnet.") for key in state)

    def last_stage(self):
        return self.backbone.focalnet.encoder.stages[-1]

    def _keep_modulator(self, module, inputs, output):
        self._modulator = output

    @property
    def embedding_size(self) -> int:
        return self.backbone.num_features[-1]

    def forward(self, image: torch.Tensor, with_map: bool = False, with_stages: bool = False):
        """See the module docstring; ``stages`` are each stage's output before its downsampling
        (its last layer's output, on the stage's own grid), coarsest first (for a 224 input:
        7x7, 14x14, 28x28, 56x56; ``stages[0]`` is the feature grid).

        transformers' hidden states are recorded after each stage's downsampling (the patch
        embedding, then each stage's input to the next), so the stages are read by forward hooks
        on the stages, present only during this call.
        """
        stages, hooks = [], []

        def keep_stage(stage, args, kwargs, output):
            # output: (hidden states, hidden states before downsampling, dimensions)
            height, width = args[1] if len(args) > 1 else kwargs["input_dimensions"]
            hidden = output[1]  # [B, H * W, C]
            stages.append(hidden.transpose(1, 2).reshape(hidden.shape[0], -1, height, width))

        if with_stages:
            for stage in self.backbone.focalnet.encoder.stages:
                hooks.append(stage.register_forward_hook(keep_stage, with_kwargs=True))
        try:
            out = self.backbone(pixel_values=image)
        finally:
            for hook in hooks:
                hook.remove()
        feature_map = out.feature_maps[-1]
        result = {"embedding": feature_map.mean(dim=(2, 3)), "grid": feature_map}
        if with_map:
            result["raw_map"] = self._modulator
            result["by_design_map"] = modulation_map(self._modulator)
        if with_stages:
            result["stages"] = stages[::-1]  # the hooks ran fine to coarse
        self._modulator = None
        return result


class ViT(Backbone):
    """A ``transformers.ViTModel`` (with its pooler, unused: the paper's parameter count).

    Every layer runs fused attention (SDPA), which never materialises attention probabilities.
    With ``with_map`` a forward pre-hook on the last layer's attention recomputes the one row the
    map needs from that layer's own query and key: ``softmax(q_cls K^T / sqrt(d))`` per head,
    ``[B, heads, 1, 1 + N]`` as ``raw_map``.
    """

    name = "vit"
    label = "ViT"
    config_class = transformers.ViTConfig
    config_file = "vit-base-patch16-224.json"

    def __init__(self, model, image_antialias=False, image_normalisation=None):
        super().__init__(model, image_antialias, image_normalisation)
        # The embedding averages the last hidden state; the pooler is kept so that checkpoints
        # and parameter counts match the paper's, but it is never used, hence frozen: DDP
        # would otherwise wait for its gradients.
        if getattr(model, "pooler", None) is not None:
            model.pooler.requires_grad_(False)
        self._want_map, self._cls_attention = False, None
        last_attention = model.layers[-1].attention
        last_attention.register_forward_pre_hook(self._keep_cls_attention, with_kwargs=True)

    @classmethod
    def _from_config(cls, config):
        # Fused attention in every layer; the map's one row is computed aside.
        config._attn_implementation = "sdpa"
        return transformers.ViTModel(config, add_pooling_layer=True)

    @classmethod
    def _from_pretrained(cls, source, cache_dir):
        return transformers.ViTModel.from_pretrained(
            source, cache_dir=cache_dir, attn_implementation="sdpa", **cls._pretrained_kwargs()
        )

    @classmethod
    def _pretrained_kwargs(cls):
        return {"add_pooling_layer": True}

    @classmethod
    def owns_state(cls, state):
        return any(key.startswith(("encoder.layer.", "layers.")) for key in state)

    def last_stage(self):
        return self.backbone.layers[-1]

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
        """See the module docstring; ``stages`` are the patch tokens (CLS dropped) of four
        layers evenly spaced in depth (L, 3L/4, L/2, L/4; fewer when the model has fewer
        layers), deepest first, each [B, D, 14, 14] for a 224 input."""
        self._want_map, self._cls_attention = with_map, None
        try:
            out = self.backbone(pixel_values=image, output_hidden_states=with_stages)
        finally:
            self._want_map = False
        hidden = out.last_hidden_state
        result = {"embedding": hidden.mean(dim=1), "grid": _patch_grid(hidden)}
        if with_map:
            result["raw_map"] = self._cls_attention
            result["by_design_map"] = attention_map(self._cls_attention)
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


BACKBONES: dict[str, type[Backbone]] = {cls.name: cls for cls in (FocalNet, ViT)}


def backbone_class(name: str) -> type[Backbone]:
    """The registered class of backbone ``name``; ValueError naming the choices."""
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
    return BACKBONES[name]


def released_backbone(state: dict) -> str:
    """The name of the registered backbone whose weights ``state`` holds (released checkpoints).

    Example
    -------
    >>> released_backbone({"focalnet.embeddings.norm.weight": None})
    'focalnet'
    """
    for name, cls in BACKBONES.items():
        if cls.owns_state(state):
            return name
    raise ValueError("the state dict is none of the registered backbones': " + ", ".join(BACKBONES))


def build(
    backbone: str,
    source: str | None = None,
    pretrained: bool = True,
    cache_dir: str | None = None,
    config_overrides: dict | None = None,
    image_antialias: bool = False,
    image_normalisation=None,
) -> Backbone:
    """Backbone ``name`` with pretrained weights (``from_pretrained(source)``) or random ones.

    Arguments
    ---------
    backbone : str
        A key of ``BACKBONES``.
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
    image_antialias, image_normalisation
        The image view (``ImageView``; the defaults are the authors').
    """
    cls = backbone_class(backbone)
    if pretrained:
        if config_overrides:
            raise ValueError(
                "backbone_config overrides change the architecture and only apply with "
                "pretrained: False (pretrained weights fix the architecture)"
            )
        if not source:
            raise ValueError("pretrained: True needs `source` (a HuggingFace id or a folder)")
        from recipes.offline import load_pretrained  # cached copy first; offline: one line

        model = load_pretrained(cls._from_pretrained, source, cache_dir)
    else:
        model = cls._from_config(cls.config(config_overrides))
    return cls(model, image_antialias=image_antialias, image_normalisation=image_normalisation)
