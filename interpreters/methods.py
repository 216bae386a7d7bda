"""The method registry: every interpretation method, what it needs, and how it makes a mask.

Each ``Method`` declares its ``name`` (the word on every command line), a ``label`` for tables,
what it ``needs`` (``"nothing"``, ``"forwards"`` (extra forwards of the classifier),
``"gradients"`` or ``"run"``: a trained interpreter), whether
its mask is ``"hard"`` (a same-area mask: its map thresholded at quantile q, the paper's
protocol) or ``"soft"`` (the method outputs a mask in [0, 1]), which of the classifier's outputs
it reads (``"map"``: the by-design map; ``"stages"``; the feature grid always comes), and one
function ``compute(batch) -> tensor`` that turns a ``MethodBatch`` into a map [B, T, F] (hard) or a
mask (soft). A trained method also has a ``TrainedRun``: the script that trains it, its module's
name in the run's checkpoints, its section of ``model.json``, how to build it from that section and
describe it in it, and the checkpoint the run selects.

``method_maps`` / ``method_masks`` compute the maps / masks of any list of methods for a batch
with one (no-grad) forward of the classifier for all of them; every study and the inference
module use them, so a method added here appears everywhere. Adding a method = one function
(in its own module) + one entry in ``METHODS``.

Example
-------
>>> [name for name in METHODS][:7]
['by_design', 'random', 'energy', 'saliency', 'integrated_gradients', 'smoothgrad', 'gradient_shap']
>>> [name for name in METHODS if name.endswith(("_soft", "_hard"))][-3:]
['piq_hard', 'lmac_hard', 'l2i_hard']
>>> METHODS["gradcam"].needs, METHODS["gradcam"].mask, METHODS["piq"].needs, METHODS["piq"].mask
('gradients', 'hard', 'run', 'soft')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from interpreters import attributions
from interpreters.baselines import energy_map, random_map
from interpreters.gradcam import gradcam
from interpreters.l2i import L2IInterpreter
from interpreters.lmac import build_decoder
from interpreters.maps import quantile_mask, upsample_map
from interpreters.piq import PIQInterpreter, piq_grid


@dataclass
class MethodBatch:
    """What a method's ``compute`` gets for a batch.

    Attributes
    ----------
    log_spec : torch.Tensor
        [B, T, F] log-spectrograms.
    outputs : dict
        The classifier's no-grad forward of ``log_spec`` (``recipes.models.AudioClassifier``):
        ``scores`` [B, n_classes], ``grid``, and ``by_design_map`` / ``stages`` when a method
        asked for them.
    classifier : callable
        The ``AudioClassifier`` itself, for methods that need gradients.
    generator : torch.Generator
        Seeded randomness (the random baseline).
    interpreter : torch.nn.Module or None
        A trained method's loaded module.
    """

    log_spec: torch.Tensor
    outputs: dict
    classifier: Callable
    generator: torch.Generator | None = None
    interpreter: torch.nn.Module | None = None

    @property
    def predicted(self) -> torch.Tensor | None:
        """The predicted class of each clip [B] (None when ``outputs`` holds no scores)."""
        scores = self.outputs.get("scores")
        return None if scores is None else scores.argmax(dim=1)


@dataclass(frozen=True)
class TrainedRun:
    """How a trained method lives in a run folder (see the module docstring)."""

    script: str
    module_key: str
    card_key: str
    select_key: str
    select_max: bool
    build: Callable[[dict], torch.nn.Module]
    describe: Callable[[torch.nn.Module], dict]
    card_extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Method:
    """One interpretation method (see the module docstring)."""

    name: str
    label: str
    needs: str
    mask: str
    compute: Callable[[MethodBatch], torch.Tensor]
    description: str
    outputs: tuple[str, ...] = ()
    run: TrainedRun | None = field(default=None)
    base: str | None = None
    from_base: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self):
        if (self.from_base is None) != (self.base is None):
            raise ValueError(f"method {self.name!r}: a variant gives both base and from_base")

    @property
    def run_name(self) -> str:
        """The method whose trained run this one reads: itself, or the one it is a variant of."""
        return self.base or self.name


def _by_design(batch: MethodBatch) -> torch.Tensor:
    by_design_map = batch.outputs.get("by_design_map")
    if by_design_map is None:
        raise ValueError("this backbone has no by-design map: choose another --methods entry")
    return upsample_map(by_design_map, batch.log_spec.shape[1:])


def _gradcam(batch: MethodBatch) -> torch.Tensor:
    return upsample_map(gradcam(batch.classifier, batch.log_spec), batch.log_spec.shape[1:])


def _piq(batch: MethodBatch) -> torch.Tensor:
    return batch.interpreter(piq_grid(batch.outputs["grid"]), batch.predicted)["mask"]


def _l2i(batch: MethodBatch) -> torch.Tensor:
    activations = batch.interpreter(batch.outputs["stages"])["activations"]
    return batch.interpreter.mask(activations, batch.predicted)


def _lmac(batch: MethodBatch) -> torch.Tensor:
    stages = batch.outputs["stages"]
    return torch.sigmoid(batch.interpreter(stages, tuple(batch.log_spec.shape[1:])))


PIQ_RUN = TrainedRun(
    script="train_piq.py",
    module_key="interpreter",
    card_key="interpreter",
    select_key="fid_i",
    select_max=True,
    build=lambda card: PIQInterpreter(
        card["input_size"], card["n_classes"], card["codebook_size"], card["width"]
    ),
    describe=lambda module: {
        "input_size": module.input_size,
        "n_classes": module.codebook.n_classes,
        "codebook_size": module.codebook.embedding.num_embeddings,
        "width": module.width,
    },
    card_extras=("mask_threshold",),
)
LMAC_RUN = TrainedRun(
    script="train_lmac.py",
    module_key="decoder",
    card_key="decoder",
    select_key="loss",
    select_max=False,
    build=build_decoder,
    describe=lambda module: module.card(),
)
L2I_RUN = TrainedRun(
    script="train_l2i.py",
    module_key="interpreter",
    card_key="interpreter",
    select_key="fid_i",
    select_max=True,
    build=lambda card: L2IInterpreter(**card),
    describe=lambda module: module.card(),
)

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "by_design",
            "by design",
            "nothing",
            "hard",
            _by_design,
            "the classifier's own map: FocalNet's modulation map, ViT's CLS attention",
            outputs=("map",),
        ),
        Method(
            "random",
            "random",
            "nothing",
            "hard",
            lambda batch: random_map(batch.log_spec, batch.generator),
            "uniform noise: a random same-area mask (the chance level)",
        ),
        Method(
            "energy",
            "energy",
            "nothing",
            "hard",
            lambda batch: energy_map(batch.log_spec),
            "the log-spectrogram itself: the loudest cells",
        ),
        Method(
            "saliency",
            "saliency",
            "gradients",
            "hard",
            lambda batch: attributions.saliency(batch.classifier, batch.log_spec, batch.predicted),
            "|d s_c / d log_spec| (Simonyan et al., 2014; Captum Saliency)",
        ),
        Method(
            "integrated_gradients",
            "Integrated Gradients",
            "gradients",
            "hard",
            lambda batch: attributions.integrated_gradients(
                batch.classifier, batch.log_spec, target=batch.predicted
            ),
            "|IG| from the silent clip, 32 steps (Sundararajan et al., 2017; Captum)",
        ),
        Method(
            "smoothgrad",
            "SmoothGrad",
            "gradients",
            "hard",
            lambda batch: attributions.smoothgrad(
                batch.classifier, batch.log_spec, batch.generator, batch.predicted
            ),
            "saliency averaged over 8 noisy copies (Smilkov et al., 2017; Captum NoiseTunnel)",
        ),
        Method(
            "gradient_shap",
            "GradientSHAP",
            "gradients",
            "hard",
            lambda batch: attributions.gradient_shap(
                batch.classifier, batch.log_spec, batch.generator, batch.predicted
            ),
            "|expected gradients| from silent and mean-level baselines (Lundberg and Lee, 2017)",
        ),
        Method(
            "occlusion",
            "Occlusion",
            "forwards",
            "hard",
            lambda batch: attributions.occlusion(
                batch.classifier, batch.log_spec, target=batch.predicted
            ),
            "the score drop when a 43 x 51 window is zeroed (Zeiler and Fergus, 2014; Captum)",
        ),
        Method(
            "gradcam",
            "Grad-CAM",
            "gradients",
            "hard",
            _gradcam,
            "ReLU of the gradient-weighted feature grid (Selvaraju et al., 2017)",
        ),
        Method(
            "piq",
            "PIQ",
            "run",
            "soft",
            _piq,
            "the PIQ interpreter's mask (a train_piq.py run)",
            run=PIQ_RUN,
        ),
        Method(
            "lmac",
            "L-MAC",
            "run",
            "soft",
            _lmac,
            "the L-MAC decoder's mask (a train_lmac.py run)",
            outputs=("stages",),
            run=LMAC_RUN,
        ),
        Method(
            "l2i",
            "L2I",
            "run",
            "soft",
            _l2i,
            "the relevant NMF components' share of the rebuilt spectrogram (a train_l2i.py run)",
            outputs=("stages",),
            run=L2I_RUN,
        ),
    )
}


ATTRIBUTION_METHODS = (
    "saliency",
    "integrated_gradients",
    "smoothgrad",
    "gradient_shap",
    "occlusion",
    "gradcam",
)


def soft_mask(values: torch.Tensor) -> torch.Tensor:
    """|map| divided by its per-clip maximum: a soft mask in [0, 1] (the L-MAC paper's
    protocol for attribution baselines); a clip whose map is all 0 gets 0.

    Example
    -------
    >>> soft_mask(torch.tensor([[[1.0, -4.0], [2.0, 0.0]]]))
    tensor([[[0.2500, 1.0000],
             [0.5000, 0.0000]]])
    """
    magnitude = values.abs().float()
    peak = magnitude.flatten(1).amax(dim=1).view(-1, *([1] * (values.dim() - 1)))
    return magnitude / peak.clamp_min(torch.finfo(torch.float32).tiny)


def _soft_variant(base: Method) -> Method:
    return Method(
        f"{base.name}_soft",
        f"{base.label} (soft)",
        base.needs,
        "soft",
        lambda batch: soft_mask(base.compute(batch)),
        f"{base.name}'s map as a soft mask: |map| / its per-clip maximum",
        outputs=base.outputs,
        base=base.name,
        from_base=soft_mask,
    )


def _unchanged(values: torch.Tensor) -> torch.Tensor:
    return values


def _same_area_variant(base: Method) -> Method:
    return Method(
        f"{base.name}_hard",
        f"{base.label} (same area)",
        base.needs,
        "hard",
        base.compute,
        f"{base.name}'s soft mask thresholded at q like every same-area mask",
        outputs=base.outputs,
        run=base.run,
        base=base.name,
        from_base=_unchanged,
    )


# Every comparison between equal areas, or said not to be: each attribution method also as a
# soft mask, each trained soft mask also thresholded at q.
METHODS.update(
    {
        variant.name: variant
        for variant in [
            *(_soft_variant(METHODS[name]) for name in ATTRIBUTION_METHODS),
            *(_same_area_variant(m) for m in list(METHODS.values()) if m.run is not None),
        ]
    }
)


def get_method(name: str) -> Method:
    """The registered method ``name``; ValueError naming the choices.

    Example
    -------
    >>> get_method("gradcam").label
    'Grad-CAM'
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: choose among {', '.join(METHODS)}")
    return METHODS[name]


def method_label(name: str) -> str:
    """The table label of method ``name`` (the name itself for an unregistered one)."""
    return METHODS[name].label if name in METHODS else name


def check_map(name: str, values: torch.Tensor) -> torch.Tensor:
    """``values`` unchanged; ValueError naming the method when it holds NaN or inf (a NaN would
    make the quantile threshold NaN and the mask silently keep fewer cells)."""
    if not torch.isfinite(values).all():
        raise ValueError(f"method {name!r} gave a map with NaN or infinite values")
    return values


@torch.no_grad()
def method_maps(
    classifier,
    log_spec: torch.Tensor,
    methods: Sequence[str],
    trained: dict | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """``(scores, maps)``: the cosine scores [B, n_classes] and each method's map (hard methods)
    or mask (soft methods) [B, T, F] for log-spectrograms [B, T, F].

    ``trained`` maps a trained method's name to its loaded module (``recipes.loading``);
    ``generator`` seeds the random baseline. One no-grad forward serves every method; those that
    need gradients run their own. A variant (``saliency_soft``, ``piq_hard``, ...) asked for
    with its base method reuses the base's map (so SmoothGrad's map and its soft mask come from
    the same noise draws) instead of computing it again.
    """
    entries = [get_method(name) for name in methods]
    trained = trained or {}
    missing = [m.name for m in entries if m.needs == "run" and m.run_name not in trained]
    if missing:
        raise ValueError(f"methods {missing} need a trained run: give it with --runs")
    wanted = {output for method in entries for output in method.outputs}
    outputs = classifier(log_spec, with_map="map" in wanted, with_stages="stages" in wanted)
    names, computed = {method.name for method in entries}, {}

    def compute(method: Method) -> torch.Tensor:
        if method.name not in computed:
            if method.base is not None and method.base in names:
                values = method.from_base(compute(METHODS[method.base]))
            else:
                interpreter = trained.get(method.run_name)
                batch = MethodBatch(log_spec, outputs, classifier, generator, interpreter)
                values = method.compute(batch)
            computed[method.name] = check_map(method.name, values)
        return computed[method.name]

    maps = {method.name: compute(method) for method in entries}
    return outputs["scores"], maps


def method_masks(
    classifier,
    log_spec: torch.Tensor,
    methods: Sequence[str],
    quantile: float,
    trained: dict | None = None,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """``(scores, masks)``: ``method_maps`` with the hard methods' maps thresholded at
    ``quantile`` (``interpreters.maps.quantile_mask``, ``valid`` cells only); soft masks as
    they are."""
    scores, maps = method_maps(classifier, log_spec, methods, trained, generator)
    masks = {name: mask_of_map(name, values, quantile, valid) for name, values in maps.items()}
    return scores, masks


def mask_of_map(
    name: str, values: torch.Tensor, quantile: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """The mask of method ``name`` from its ``method_maps`` output: a hard method's map
    thresholded at ``quantile`` (``valid`` cells only), a soft method's mask as it is.

    Example
    -------
    >>> values = torch.arange(4.0).view(1, 2, 2)
    >>> mask_of_map("energy", values, 0.5).flatten().tolist()
    [0.0, 0.0, 1.0, 1.0]
    >>> mask_of_map("piq", values / 4, 0.5).flatten().tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    if get_method(name).mask == "hard":
        return quantile_mask(values, quantile, valid)
    return values
