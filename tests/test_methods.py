"""The method registry: entries, the shared mask helper, Grad-CAM by known answers."""

import pytest
import torch

from interpreters import attributions
from interpreters.gradcam import gradcam, gradcam_map
from interpreters.maps import kept_cells
from interpreters.methods import (
    ATTRIBUTION_METHODS,
    METHODS,
    Method,
    MethodBatch,
    get_method,
    method_maps,
    method_masks,
    soft_mask,
)


class GridClassifier:
    """A classifier small enough to work out by hand: the feature grid is the log-spectrogram
    average-pooled to [B, 1, 2, 2] (one channel, times 2 channels with a sign), and the scores
    are linear in it, s_c = sum_kij W_ckij A_kij."""

    def __init__(self, weights):
        self.weights = weights  # [C, 2, 2, 2]

    def __call__(self, log_spec, with_map=False, with_stages=False):
        pooled = torch.nn.functional.adaptive_avg_pool2d(log_spec.unsqueeze(1), 2)
        grid = torch.cat([pooled, -pooled], dim=1)  # [B, 2, 2, 2]
        scores = torch.einsum("bkij,ckij->bc", grid, self.weights)
        out = {"scores": scores, "grid": grid}
        if with_map:
            out["by_design_map"] = pooled[:, 0]
        return out

    def scores(self, log_spec):
        return self(log_spec)["scores"]


def test_registry_entries_declare_what_they_need():
    for name, method in METHODS.items():
        assert method.name == name and method.label and method.description
        assert method.needs in ("nothing", "forwards", "gradients", "run")
        assert method.mask in ("hard", "soft")
        assert (method.run is not None) == (method.needs == "run")
    assert get_method("gradcam").mask == "hard" and get_method("lmac").outputs == ("stages",)
    with pytest.raises(ValueError, match="unknown method 'focal'"):
        get_method("focal")


def test_gradcam_of_a_linear_classifier_is_the_hand_computed_map():
    torch.manual_seed(0)
    weights = torch.randn(3, 2, 2, 2)
    model = GridClassifier(weights)
    log_spec = torch.rand(2, 8, 6)
    out = model(log_spec)
    predicted = out["scores"].argmax(dim=1)
    # d s_c / d A = W_c, so alpha_k = mean_ij W_ckij and the map is ReLU(sum_k alpha_k A_k)
    alpha = weights[predicted].mean(dim=(2, 3))  # [B, 2]
    expected = torch.relu(torch.einsum("bk,bkij->bij", alpha, out["grid"]))
    assert torch.allclose(gradcam(model, log_spec), expected, atol=1e-6)
    assert torch.allclose(gradcam_map(out["grid"], weights[predicted]), expected, atol=1e-6)


def test_method_masks_share_one_forward_and_keep_equal_areas():
    torch.manual_seed(0)
    calls = []
    model = GridClassifier(torch.randn(3, 2, 2, 2))

    def counted(log_spec, **kwargs):
        calls.append(kwargs)
        return model(log_spec, **kwargs)

    counted.scores = model.scores
    log_spec = torch.rand(2, 40, 30)
    names = ["by_design", "random", "energy", "saliency", "gradcam"]
    generator = torch.Generator().manual_seed(0)
    scores, masks = method_masks(counted, log_spec, names, 0.9, generator=generator)
    # one no-grad forward with the map for all; Grad-CAM runs its own (with gradients)
    assert calls[0] == {"with_map": True, "with_stages": False} and len(calls) == 2
    assert torch.equal(scores, model(log_spec)["scores"])
    n_kept = int(kept_cells(40 * 30, 0.9))
    for name in names:
        assert masks[name].shape == log_spec.shape
        assert masks[name].flatten(1).sum(dim=1).tolist() == [n_kept, n_kept], name


def test_a_nan_map_is_refused_naming_the_method():
    model = GridClassifier(torch.randn(3, 2, 2, 2))
    log_spec = torch.rand(1, 8, 6)
    log_spec[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="method 'energy' gave a map with NaN"):
        method_maps(model, log_spec, ["energy"])


def test_a_trained_method_without_its_run_is_refused():
    model = GridClassifier(torch.randn(3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"\['piq'\] need a trained run"):
        method_maps(model, torch.rand(1, 8, 6), ["by_design", "piq"])


class TinyNet(torch.nn.Module):
    """A small nonlinear classifier of [B, T, F] inputs (for the attribution methods)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 6 * 5, 3)

    def scores(self, x):
        hidden = torch.tanh(self.conv(x.unsqueeze(1)))
        return self.head(torch.nn.functional.avg_pool2d(hidden, 2).flatten(1))


def test_integrated_gradients_is_complete():
    """Completeness: the attributions sum to s_c(x) - s_c(0); Captum's Gauss-Legendre rule with
    32 steps gets within 1e-4 of it on this smooth net (the tolerance asserted)."""
    model = TinyNet()
    x = torch.rand(2, 12, 10) * 3
    signed, delta = attributions.integrated_gradients_signed(model, x, steps=32)
    predicted = model.scores(x).argmax(dim=1)
    difference = (model.scores(x) - model.scores(torch.zeros_like(x))).gather(
        1, predicted[:, None]
    )[:, 0]
    assert torch.allclose(signed.flatten(1).sum(dim=1), difference, atol=1e-4)
    assert delta.abs().max() < 1e-4
    assert torch.equal(attributions.integrated_gradients(model, x), signed.abs())


def test_captum_saliency_is_the_autograd_gradient():
    model = TinyNet()
    x = torch.rand(3, 12, 10)
    leaf = x.clone().requires_grad_(True)
    scores = model.scores(leaf)
    scores.gather(1, scores.argmax(dim=1, keepdim=True)).sum().backward()
    assert torch.allclose(attributions.saliency(model, x), leaf.grad.abs())


def test_occlusion_of_a_linear_classifier_sums_the_window_contributions():
    weights = torch.randn(3, 4, 6)

    class Linear:
        def scores(self, x):
            return torch.einsum("btf,ctf->bc", x, weights)

    x = torch.rand(1, 4, 6)
    c = int(Linear().scores(x).argmax())
    occluded = attributions.occlusion(Linear(), x, window=(2, 3))
    # zeroing a 2 x 3 window drops the score by that window's sum of w_c * x, spread over it
    contribution = (weights[c] * x[0]).unfold(0, 2, 2).unfold(1, 3, 3).sum(dim=(-1, -2))
    expected = contribution.repeat_interleave(2, 0).repeat_interleave(3, 1).abs()
    assert torch.allclose(occluded[0], expected, atol=1e-5)


def test_smoothgrad_and_gradient_shap_repeat_with_the_seed():
    model = TinyNet()
    x = torch.rand(2, 12, 10)
    for method in (attributions.smoothgrad, attributions.gradient_shap):
        first = method(model, x, torch.Generator().manual_seed(3))
        again = method(model, x, torch.Generator().manual_seed(3))
        other = method(model, x, torch.Generator().manual_seed(4))
        assert (
            first.shape == x.shape and torch.equal(first, again) and not torch.equal(first, other)
        )


def test_every_attribution_method_has_a_soft_and_every_trained_one_a_same_area_variant():
    for name in ATTRIBUTION_METHODS:
        soft = METHODS[f"{name}_soft"]
        assert soft.mask == "soft" and soft.base == name and METHODS[name].mask == "hard"
    for name in ("piq", "lmac"):
        hard = METHODS[f"{name}_hard"]
        assert hard.mask == "hard" and hard.run_name == name and hard.run is METHODS[name].run
    model = TinyNet()
    x = torch.rand(2, 12, 10)
    batch = MethodBatch(x, {"scores": model.scores(x)}, model)
    soft = METHODS["saliency_soft"].compute(batch)
    assert torch.equal(soft, soft_mask(attributions.saliency(model, x)))
    assert soft.flatten(1).amax(dim=1).tolist() == [1.0, 1.0] and soft.min() >= 0


def test_a_variant_asked_with_its_base_reuses_the_bases_map(monkeypatch):
    torch.manual_seed(0)
    model = GridClassifier(torch.randn(3, 2, 2, 2))
    x = torch.rand(2, 12, 10)
    calls = []
    smoothgrad = attributions.smoothgrad

    def counted(*args, **kwargs):
        calls.append(1)
        return smoothgrad(*args, **kwargs)

    monkeypatch.setattr(attributions, "smoothgrad", counted)
    _, maps = method_maps(
        model, x, ["smoothgrad", "smoothgrad_soft"], generator=torch.Generator().manual_seed(3)
    )
    assert len(calls) == 1  # one SmoothGrad for both: the soft mask is of the same noise draws
    assert torch.equal(maps["smoothgrad_soft"], soft_mask(maps["smoothgrad"]))
    # asked alone, the variant computes its base's map itself, from the same draws
    _, alone = method_maps(
        model, x, ["smoothgrad_soft"], generator=torch.Generator().manual_seed(3)
    )
    assert len(calls) == 2 and torch.equal(alone["smoothgrad_soft"], maps["smoothgrad_soft"])
    with pytest.raises(ValueError, match="gives both base and from_base"):
        Method("x", "x", "nothing", "hard", lambda batch: batch.log_spec, "x", base="energy")
