"""ViT runs fused attention (SDPA) in every layer; its map equals the eager attention map."""

import copy

import torch

from interpreters.maps import attention_map
from recipes.models import TINY_VIT, build_embedder


def test_vit_uses_sdpa_and_its_map_equals_the_eager_attention_map():
    torch.manual_seed(0)
    sdpa = build_embedder("vit", pretrained=False, config_overrides=TINY_VIT).eval()
    assert sdpa.backbone.config._attn_implementation == "sdpa"
    eager = copy.deepcopy(sdpa.backbone)
    eager.config._attn_implementation = "eager"
    image = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        reference = eager(pixel_values=image, output_attentions=True)
        with_map = sdpa(image, with_map=True)
        plain = sdpa(image)
    assert with_map["raw_map"].shape == (3, TINY_VIT["num_attention_heads"], 1, 197)
    assert torch.allclose(
        attention_map(with_map["raw_map"]), attention_map(reference.attentions[-1]), atol=1e-5
    )
    # asking for the map changes nothing else; SDPA and eager give the same embedding
    assert torch.equal(with_map["embedding"], plain["embedding"])
    assert torch.allclose(plain["embedding"], reference.last_hidden_state.mean(dim=1), atol=1e-5)
    assert "raw_map" not in plain


def test_the_map_keeps_its_gradient_path_and_no_state_leaks():
    sdpa = build_embedder("vit", pretrained=False, config_overrides=TINY_VIT).eval()
    image = torch.randn(1, 3, 224, 224, requires_grad=True)
    attention_map(sdpa(image, with_map=True)["raw_map"]).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert sdpa._cls_attention is None and sdpa._want_map is False
