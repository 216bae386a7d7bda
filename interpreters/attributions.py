"""Attribution methods from Captum (the field's library), as maps on the log-spectrogram.

Each function takes the classifier (``recipes.models.AudioClassifier``, or anything with a
differentiable ``scores(log_spec) -> [B, n_classes]``) and log-spectrograms [B, T, F] and returns
|attribution| [B, T, F] for each clip's predicted class:

- ``saliency``: |d s_c / d x| (Simonyan et al., 2014; Captum ``Saliency``);
- ``integrated_gradients``: the path integral of the gradient from the silent clip
  (log-spectrogram 0) to the clip, ``IG_i = x_i * mean_k d s_c / d x_i (a_k x)`` over ``IG_STEPS``
  Gauss-Legendre points ``a_k`` (Sundararajan et al., 2017; Captum ``IntegratedGradients``); its
  attributions sum to ``s_c(x) - s_c(0)`` (completeness) up to the integration error;
- ``smoothgrad``: the saliency averaged over ``SMOOTHGRAD_SAMPLES`` copies of the clip with
  Gaussian noise of ``SMOOTHGRAD_STDEV`` times the clip's range (Smilkov et al., 2017; Captum
  ``NoiseTunnel``);
- ``gradient_shap``: expected gradients from baselines drawn between the silent clip and the clip's
  own mean level, ``GRADIENT_SHAP_SAMPLES`` draws (Lundberg and Lee, 2017; Captum ``GradientShap``);
- ``occlusion``: the drop of s_c when a window of ``OCCLUSION_WINDOW`` cells (time x frequency) is
  set to 0, slid with that stride (Zeiler and Fergus, 2014; Captum ``Occlusion``).

The scores are the cosine scores (the classifier's own outputs); every map is thresholded to a
same-area mask by the method registry, or normalised to a soft mask.

Example
-------
>>> weights = torch.randn(3, 4, 5)
>>> class Linear:
...     def scores(self, x):
...         return torch.einsum("btf,ctf->bc", x, weights)
>>> x = torch.rand(2, 4, 5)
>>> predicted = Linear().scores(x).argmax(dim=1)
>>> torch.allclose(saliency(Linear(), x), weights[predicted].abs())
True
>>> torch.allclose(integrated_gradients(Linear(), x), (x * weights[predicted]).abs(), atol=1e-5)
True
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from captum.attr import GradientShap, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

IG_STEPS = 32
SMOOTHGRAD_SAMPLES = 8
SMOOTHGRAD_STDEV = 0.15  # of each clip's range (max - min), Smilkov et al.'s 10-20 %
GRADIENT_SHAP_SAMPLES = 8
OCCLUSION_WINDOW = (43, 51)  # frames x bins: a tenth of a 5 s clip's 431 x 513 in each direction


@contextlib.contextmanager
def _seeded(generator):
    """Captum draws with torch's and numpy's global generators: both seeded here from
    ``generator`` (and restored after), so that a run's maps repeat."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)


def _forward(classifier):
    return lambda x: classifier.scores(x)


def _target(classifier, log_spec, target=None):
    """The class each clip's attribution explains: ``target`` (the predicted classes the
    caller already has) or the classifier's prediction (one more forward)."""
    if target is not None:
        return target
    with torch.no_grad():
        return classifier.scores(log_spec).argmax(dim=1)


def _attribute(method, classifier, log_spec, target=None, **kwargs) -> torch.Tensor:
    x = log_spec.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        attribution = method.attribute(x, target=_target(classifier, log_spec, target), **kwargs)
    return attribution.detach().abs().float()


def saliency(classifier, log_spec: torch.Tensor, target=None) -> torch.Tensor:
    """|d s_c / d x| [B, T, F] (Captum ``Saliency``); ``target``: the classes [B] to explain
    (default: the predicted ones)."""
    return _attribute(Saliency(_forward(classifier)), classifier, log_spec, target, abs=True)


def integrated_gradients_signed(classifier, log_spec, steps: int = IG_STEPS, target=None):
    """Signed IG attributions [B, T, F] from the silent clip, and the convergence delta [B]
    (``sum(attributions) - (s_c(x) - s_c(0))``)."""
    method = IntegratedGradients(_forward(classifier))
    x = log_spec.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        attribution, delta = method.attribute(
            x,
            baselines=torch.zeros_like(x),
            target=_target(classifier, log_spec, target),
            n_steps=steps,
            internal_batch_size=x.shape[0],
            return_convergence_delta=True,
        )
    return attribution.detach(), delta.detach()


def integrated_gradients(
    classifier, log_spec: torch.Tensor, steps: int = IG_STEPS, target=None
) -> torch.Tensor:
    """|IG| [B, T, F] from the silent clip (Captum ``IntegratedGradients``)."""
    method = IntegratedGradients(_forward(classifier))
    return _attribute(
        method,
        classifier,
        log_spec,
        target,
        baselines=torch.zeros_like(log_spec),
        n_steps=steps,
        internal_batch_size=log_spec.shape[0],
    )


def _ranges(log_spec):
    flat = log_spec.detach().flatten(1)
    return (flat.amax(dim=1) - flat.amin(dim=1)).clamp_min(1e-6)


def smoothgrad(classifier, log_spec: torch.Tensor, generator=None, target=None) -> torch.Tensor:
    """SmoothGrad [B, T, F]: the mean saliency over noisy copies (Captum ``NoiseTunnel``).

    The noise is seeded from ``generator``.
    """
    stdevs = tuple(float(SMOOTHGRAD_STDEV * r) for r in _ranges(log_spec))
    target = _target(classifier, log_spec, target)
    maps = []
    with _seeded(generator):
        for index in range(log_spec.shape[0]):  # one noise level per clip
            method = NoiseTunnel(Saliency(_forward(classifier)))
            clip = log_spec[index : index + 1]
            maps.append(
                _attribute(
                    method,
                    classifier,
                    clip,
                    target[index : index + 1],
                    nt_type="smoothgrad",
                    nt_samples=SMOOTHGRAD_SAMPLES,
                    stdevs=stdevs[index],
                    abs=True,
                )
            )
    return torch.cat(maps)


def gradient_shap(classifier, log_spec: torch.Tensor, generator=None, target=None) -> torch.Tensor:
    """|GradientShap| [B, T, F] with baselines from the silent clip to the clip's mean level."""
    level = log_spec.detach().mean().item()
    baselines = torch.stack([torch.zeros_like(log_spec[0]), torch.full_like(log_spec[0], level)])
    with _seeded(generator):
        return _attribute(
            GradientShap(_forward(classifier)),
            classifier,
            log_spec,
            target,
            baselines=baselines,
            n_samples=GRADIENT_SHAP_SAMPLES,
        )


def occlusion(
    classifier, log_spec: torch.Tensor, window=OCCLUSION_WINDOW, target=None
) -> torch.Tensor:
    """|Occlusion| [B, T, F]: the score drop when each window is zeroed (Captum ``Occlusion``).

    A window larger than the spectrogram is cut to it; costs one forward per window position.
    """
    window = tuple(min(int(w), size) for w, size in zip(window, log_spec.shape[1:], strict=True))
    with torch.no_grad():
        return _attribute(
            Occlusion(_forward(classifier)),
            classifier,
            log_spec,
            target,
            sliding_window_shapes=window,
            strides=window,
            baselines=0.0,
            perturbations_per_eval=4,
        )
