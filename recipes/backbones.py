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
(['cnn14', 'focalnet', 'vit'], 'ViT')
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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
# CNN14 at 1/32 of its widths (conv blocks 2, 4, ..., 32 channels, embedding 64): SpeechBrain's
# Cnn14 has fixed widths, so tests narrow its blocks (``Cnn14Backbone``); 80 mel bands as theirs.
TINY_CNN14 = {"width": 2, "emb_dim": 64}


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
    # The method the classifier recipe's test stage scores (``interpreters.methods``): the
    # by-design map where the backbone has one.
    test_method = "by_design"
    # L-MAC's decoder (``interpreters.lmac.decoder_for``): "stages" (``LMACDecoder``) or
    # "cnn14psi_stft" (the authors' CNN14 decoder).
    lmac_decoder = "stages"

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
        grid = _patch_grid(hidden)
        # the mean of all tokens (CLS and patches), taken through the grid so that the scores
        # depend on the grid in the autograd graph (Grad-CAM differentiates them by it)
        tokens = torch.cat([hidden[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
        result = {"embedding": tokens.mean(dim=1), "grid": grid}
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


@dataclass
class Cnn14Config:
    """What builds a CNN14 and its front-end (``recipes/configs/cnn14.json``).

    ``mel_bins``, ``emb_dim``, ``norm_type``: SpeechBrain's ``Cnn14`` arguments; ``width``: the
    channels of its first conv block (64, fixed in SpeechBrain's class; the blocks double it up
    to 1024). Any other width rebuilds blocks 1-5 as SpeechBrain ``ConvBlock``s at ``width``,
    ``2 width``, ..., ``16 width`` (tests only: ``TINY_CNN14``). ``n_fft``, ``sample_rate``: the
    mel filterbank's (SpeechBrain's ``Filterbank``, as their ESC-50 CNN14 recipe).
    """

    mel_bins: int = 80
    emb_dim: int = 2048
    norm_type: str = "bn"
    width: int = 64
    n_fft: int = 1024
    sample_rate: int = 16000


class Cnn14Backbone(Backbone):
    """SpeechBrain's ``speechbrain.lobes.models.Cnn14.Cnn14`` with the front-end of SpeechBrain's
    ESC-50 CNN14 recipe (``recipes/ESC50/classification/hparams/cnn14.yaml``).

    Its view of a log-spectrogram ``log1p(|STFT|)`` [B, T, 513] is ``log1p(Filterbank(|STFT|))``
    [B, T, 80]: the magnitude (``expm1`` of the log-spectrogram; their ``spec_mag_power: 0.5``)
    through 80 triangular mel filters (``log_mel: False``), then ``log1p`` (``use_log1p_mel``), so
    a mask on the log-spectrogram reaches the classifier as the authors' L-MAC recipe maps it
    (``train_lmac.py``, ``use_stft2mel``). No image: ``image_antialias`` and
    ``image_normalisation`` do not apply.

    Outputs: ``embedding`` [B, emb_dim] (Cnn14's max + mean pooled embedding); ``grid`` the last
    conv block's map [B, emb_dim, T/32, 80/32] (time x mel, 13 x 2 for 5 s); ``stages`` the
    four maps Cnn14 returns with ``return_reps`` (blocks 6, 5, 4, 3: coarsest first, as
    ``CNN14PSI_stft`` reads them). No by-design map (``has_by_design_map`` False): the
    classifier recipe's test stage scores Grad-CAM instead.
    """

    name = "cnn14"
    label = "CNN14"
    config_class = Cnn14Config
    config_file = "cnn14.json"
    has_by_design_map = False
    test_method = "gradcam"
    lmac_decoder = "cnn14psi_stft"

    def __init__(self, model, image_antialias=False, image_normalisation=None, config=None):
        if image_antialias or image_normalisation is not None:
            raise ValueError(
                "cnn14 reads mel filterbank features, not an image: image_antialias and "
                "image_normalisation do not apply (leave them False / null)"
            )
        super().__init__(model)
        from speechbrain.processing.features import Filterbank

        config = config or Cnn14Config(mel_bins=model.norm0.num_features)
        self.config = config
        # No parameters, no buffers (frozen): checkpoints hold Cnn14's weights only.
        self.fbank = Filterbank(
            n_mels=config.mel_bins,
            n_fft=config.n_fft,
            sample_rate=config.sample_rate,
            log_mel=False,
        )

    @classmethod
    def _from_config(cls, config):
        from speechbrain.lobes.models.Cnn14 import Cnn14, ConvBlock

        model = Cnn14(config.mel_bins, config.emb_dim, config.norm_type, return_reps=True)
        if config.width != 64:
            widths = [1] + [config.width * 2**i for i in range(5)]
            for index in range(5):
                block = ConvBlock(widths[index], widths[index + 1], config.norm_type)
                setattr(model, f"conv_block{index + 1}", block)
            model.conv_block6 = ConvBlock(widths[-1], config.emb_dim, config.norm_type)
        return model

    @classmethod
    def build_from_config(cls, config, **view):
        """The backbone of ``config`` (random weights)."""
        return cls(cls._from_config(config), config=config, **view)

    @classmethod
    def _from_pretrained(cls, source, cache_dir):
        """SpeechBrain's pretrained encoder: ``embedding_model.ckpt`` (a ``Cnn14`` state dict at
        the shipped config) of a folder or of a hub repository (``speechbrain/cnn14-esc50``, as
        their recipe's ``embedding_model_path``)."""
        folder = Path(source)
        if not folder.is_dir():
            from recipes.offline import download_hub_files

            folder = download_hub_files(
                source, ("embedding_model.ckpt",), cache_dir, what="the pretrained CNN14 encoder"
            )
        path = folder / "embedding_model.ckpt"
        if not path.is_file():
            raise OSError(f"{folder} has no embedding_model.ckpt")
        model = cls._from_config(cls.config())
        model.load_state_dict(torch.load(path, map_location="cpu"))
        return model

    @classmethod
    def owns_state(cls, state):
        return any(key.startswith("conv_block1.") for key in state)

    def load_state(self, state: dict) -> None:
        """Loads a Cnn14 state dict (SpeechBrain's ``embedding_model.ckpt``); every weight must
        fit (RuntimeError naming what does not)."""
        self.backbone.load_state_dict(state)

    def last_stage(self):
        return self.backbone.conv_block6

    @property
    def embedding_size(self) -> int:
        return self.backbone.conv_block6.conv2.out_channels

    def image(self, log_spec: torch.Tensor) -> torch.Tensor:
        """[B, T, F] log-spectrograms -> [B, T, mel_bins] log1p mel features (see the class)."""
        magnitude = torch.expm1(log_spec.float()).clamp(min=0.0)
        return torch.log1p(self.fbank(magnitude))

    def forward(self, features: torch.Tensor, with_map: bool = False, with_stages: bool = False):
        """See the class docstring; ``by_design_map`` is None with ``with_map``."""
        embedding, reps = self.backbone(features)
        result = {"embedding": embedding.squeeze(1), "grid": reps[0]}
        if with_map:
            result["raw_map"] = result["by_design_map"] = None
        if with_stages:
            result["stages"] = list(reps)
        return result


def _patch_grid(hidden: torch.Tensor) -> torch.Tensor:
    """ViT tokens [B, 1 + N, D] -> patches on their square grid [B, D, sqrt(N), sqrt(N)]."""
    patches = hidden[:, 1:]
    side = math.isqrt(patches.shape[1])
    return patches.transpose(1, 2).reshape(hidden.shape[0], -1, side, side)


BACKBONES: dict[str, type[Backbone]] = {cls.name: cls for cls in (FocalNet, ViT, Cnn14Backbone)}


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
        config = cls.config(config_overrides)
        if hasattr(cls, "build_from_config"):
            return cls.build_from_config(
                config, image_antialias=image_antialias, image_normalisation=image_normalisation
            )
        model = cls._from_config(config)
    return cls(model, image_antialias=image_antialias, image_normalisation=image_normalisation)
