"""Backbones, embedders and the cosine head: exact sizes, shapes, maps, offline loading."""

import pytest
import torch

from interpreters.maps import attention_map, modulation_map, upsample_map
from recipes.backbones import BACKBONES, TINY_CNN14, backbone_class, build
from recipes.features import to_image
from recipes.models import (
    TINY_FOCALNET,
    TINY_VIT,
    AudioClassifier,
    build_embedder,
    build_head,
    count_parameters,
)

TINY = {"focalnet": TINY_FOCALNET, "vit": TINY_VIT, "cnn14": TINY_CNN14}


@pytest.mark.parametrize(
    "backbone, embedding_size, expected, paper",
    [
        ("focalnet", 1024, 87_331_592, 87.3e6),  # backbone 87,123,144 + head 208,448
        ("vit", 768, 86_548_032, 86.5e6),  # with the pooler, as the paper counts
    ],
)
def test_full_size_parameter_counts_match_the_paper(backbone, embedding_size, expected, paper):
    embedder = build_embedder(backbone, pretrained=False)
    assert embedder.embedding_size == embedding_size
    head = build_head(embedder.embedding_size, n_classes=50)
    n_params = count_parameters(embedder, head)
    assert n_params == expected
    assert round(n_params / 1e5) == round(paper / 1e5)  # 87.3M / 86.5M as printed


@pytest.mark.parametrize("backbone, overrides", [("focalnet", TINY_FOCALNET), ("vit", TINY_VIT)])
def test_tiny_backbones_give_embedding_grid_and_map_in_one_layout(backbone, overrides):
    embedder = build_embedder(backbone, pretrained=False, config_overrides=overrides)
    image = torch.randn(2, 3, 224, 224)
    out = embedder(image, with_map=True, with_stages=True)
    size = embedder.embedding_size
    side = 7 if backbone == "focalnet" else 14
    assert out["embedding"].shape == (2, size)
    assert out["grid"].shape == (2, size, side, side)
    assert out["by_design_map"].shape == (2, side, side)
    own_map = {"focalnet": modulation_map, "vit": attention_map}[backbone]
    assert torch.equal(out["by_design_map"], own_map(out["raw_map"]))
    assert upsample_map(out["by_design_map"], (431, 513)).shape == (2, 431, 513)
    assert all(stage.dim() == 4 and stage.shape[0] == 2 for stage in out["stages"])
    sides = [stage.shape[-1] for stage in out["stages"]]
    assert sides == sorted(sides)  # coarsest first
    plain = embedder(image)
    assert "by_design_map" not in plain and "stages" not in plain  # only when asked


def test_backbone_registry_names_labels_and_released_state_detection():
    assert sorted(BACKBONES) == ["cnn14", "focalnet", "vit"]
    assert [BACKBONES[name].label for name in ("focalnet", "vit")] == ["FocalNet", "ViT"]
    from recipes.backbones import released_backbone

    for name in BACKBONES:
        model = build(name, pretrained=False, config_overrides=TINY[name])
        assert model.name == name and backbone_class(name) is type(model)
        assert released_backbone(model.backbone.state_dict()) == name
        assert any(p is q for p in model.last_stage().parameters() for q in model.parameters())


def test_audio_classifier_is_backbone_then_head():
    embedder = build_embedder("vit", pretrained=False, config_overrides=TINY_VIT).eval()
    head = build_head(embedder.embedding_size, n_classes=3).eval()
    model = AudioClassifier(embedder, head)
    log_spec = torch.rand(2, 431, 513)
    by_hand = head(embedder(embedder.image(log_spec))["embedding"].unsqueeze(1)).squeeze(1)
    assert torch.equal(model.scores(log_spec), by_hand)
    assert set(model.state_dict()) == {
        *(f"embedding_model.{key}" for key in embedder.state_dict()),
        *(f"classifier.{key}" for key in head.state_dict()),
    }


def test_focalnet_map_is_the_last_layers_modulator():
    """raw_map is m(i, X) of eq. (1)-(2): what multiplies q(x) in the last layer of the last
    stage."""
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
    modulation = embedder.backbone.focalnet.encoder.stages[-1].layers[-1].modulation
    seen = {}
    modulation.projection_in.register_forward_hook(lambda m, i, o: seen.update(x=o))
    modulation.projection_out.register_forward_hook(lambda m, i, o: seen.update(y=i[0]))
    out = embedder(torch.randn(1, 3, 224, 224), with_map=True)
    size = embedder.embedding_size
    q = seen["x"].permute(0, 3, 1, 2)[:, :size]  # q(x), [B, C, 7, 7]
    y = seen["y"].permute(0, 3, 1, 2)  # q(x) * m(i, X) before the output projection
    assert out["raw_map"].shape == (1, size, 7, 7)
    assert torch.allclose(y, q * out["raw_map"], atol=1e-6)


def test_vit_embedding_averages_all_tokens_including_cls():
    embedder = build_embedder("vit", pretrained=False, config_overrides=TINY_VIT)
    seen = {}
    embedder.backbone.register_forward_hook(lambda m, i, o: seen.update(hidden=o.last_hidden_state))
    out = embedder(torch.randn(2, 3, 224, 224))
    assert seen["hidden"].shape[1] == 197
    assert torch.equal(out["embedding"], seen["hidden"].mean(dim=1))  # bit for bit
    patches = seen["hidden"][:, 1:].transpose(1, 2).reshape(2, -1, 14, 14)
    assert torch.equal(out["grid"], patches)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_gradcam_runs_on_every_backbone(backbone):
    """The scores depend on the grid in the autograd graph (the ViT's embedding once read the
    tokens beside the grid, and Grad-CAM stopped with 'not used in the graph')."""
    from interpreters.gradcam import gradcam

    torch.manual_seed(0)
    embedder = build_embedder(backbone, pretrained=False, config_overrides=TINY[backbone]).eval()
    model = AudioClassifier(embedder, build_head(embedder.embedding_size, n_classes=3)).eval()
    log_spec = torch.rand(2, 431, 513)
    maps = gradcam(model, log_spec)
    grid = model(log_spec)["grid"]
    assert maps.shape == (2, *grid.shape[2:]) and torch.isfinite(maps).all()
    assert (maps > 0).any()  # not the empty map of a zero gradient


def test_pretrained_path_loads_weights_with_from_pretrained(tmp_path):
    """The real loading code, against a local folder written here (never the hub)."""
    for backbone, overrides in [("focalnet", TINY_FOCALNET), ("vit", TINY_VIT)]:
        original = build(backbone, pretrained=False, config_overrides=overrides).backbone
        original.save_pretrained(tmp_path / backbone)
        loaded = build(backbone, source=str(tmp_path / backbone), pretrained=True).backbone
        for (name, a), (_, b) in zip(
            original.state_dict().items(), loaded.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), name


def test_bad_backbone_options_are_clear_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        build("resnet", pretrained=False)
    with pytest.raises(ValueError, match="embed_dimm"):
        backbone_class("focalnet").config({"embed_dimm": 8})
    with pytest.raises(ValueError, match="only apply with pretrained: False"):
        build("vit", source="x", pretrained=True, config_overrides={"hidden_size": 8})


def test_head_outputs_cosines_and_takes_the_bn_momentum():
    head = build_head(16, n_classes=4, bn_momentum=0.5)
    scores = head(torch.randn(8, 1, 16))
    assert scores.shape == (8, 1, 4) and scores.abs().max() <= 1 + 1e-6
    momenta = [m.momentum for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert momenta == [0.5]


# ------------------------------------------------------------------ image view


def _tiny_conv_focalnet(**view):
    torch.manual_seed(0)
    config = {"embed_dim": 8, "depths": [1, 1, 1, 1], "use_conv_embed": True}
    return build_embedder("focalnet", pretrained=False, config_overrides=config, **view)


def test_image_view_standardises_and_antialiases():
    log_spec = torch.rand(2, 431, 513)
    plain = _tiny_conv_focalnet()
    assert torch.equal(plain.image(log_spec), to_image(log_spec))  # the authors' view
    view = _tiny_conv_focalnet(image_antialias=True, image_normalisation=[0.28, 0.42])
    expected = (to_image(log_spec, antialias=True) - 0.28) / 0.42
    assert torch.allclose(view.image(log_spec), expected)
    with pytest.raises(ValueError, match="std must be > 0"):
        _tiny_conv_focalnet(image_normalisation=[0.0, 0.0])


def test_standardised_input_keeps_initial_gradients_finite_and_small():
    """Log-spectrograms are near 0 almost everywhere (exactly 0 in digital silence): a patch's
    projection is then its bias alone, and the LayerNorm after it divides by that bias's tiny
    spread. Measured here: ~5e11 at initialisation without standardisation, ~40 with it."""
    log_spec = torch.zeros(4, 431, 513)
    log_spec[:, 100:200, :50] = torch.rand(4, 100, 50, generator=torch.Generator().manual_seed(0))

    def gradient_norm(normalisation):
        embedder = _tiny_conv_focalnet(image_antialias=True, image_normalisation=normalisation)
        head = build_head(embedder.embedding_size, 3)
        cosine = head(embedder(embedder.image(log_spec))["embedding"].unsqueeze(1)).squeeze(1)
        torch.nn.functional.cross_entropy(30 * cosine, torch.tensor([0, 1, 2, 0])).backward()
        parameters = [*embedder.parameters(), *head.parameters()]
        return float(torch.nn.utils.clip_grad_norm_(parameters, float("inf")))

    assert gradient_norm(None) > 1e6
    assert gradient_norm([0.28, 0.42]) < 1e3


def test_model_card_records_the_image_view():
    from recipes.runs import RunFolderError, build_classifier, check_model_card

    card = {
        "backbone": "focalnet",
        "backbone_config": {"embed_dim": 8, "depths": [1, 1, 1, 1]},
        "n_classes": 3,
        "head_neurons": 16,
        "head": "cosine",
        "image_antialias": False,
        "image_normalisation": None,
    }
    embedder, _ = build_classifier(card)
    assert embedder.image_antialias is False and embedder.image_normalisation is None
    with pytest.raises(RunFolderError, match="image_antialias: the run has False"):
        check_model_card(card, {"image_antialias": True}, "run")
    embedder, _ = build_classifier(
        {**card, "image_antialias": True, "image_normalisation": [0.28, 0.42]}
    )
    assert embedder.image_antialias is True and embedder.image_normalisation == (0.28, 0.42)
