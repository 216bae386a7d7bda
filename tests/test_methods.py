"""The method registry: entries, the shared mask helper, Grad-CAM by known answers."""

import pytest
import torch

from interpreters.gradcam import gradcam, gradcam_map
from interpreters.maps import kept_cells
from interpreters.methods import METHODS, get_method, method_maps, method_masks


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
        assert method.needs in ("nothing", "gradients", "run")
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
