"""CNN14 on SpeechBrain's Cnn14: parameter count, layouts, its L-MAC decoder, no by-design map."""

import torch

from interpreters.lmac import build_decoder, decoder_for
from interpreters.methods import method_maps
from recipes.backbones import BACKBONES, TINY_CNN14, build
from recipes.models import AudioClassifier, build_head, count_parameters


def test_full_size_cnn14_has_speechbrains_parameter_count():
    backbone = build("cnn14", pretrained=False)  # 80 mels, emb 2048
    assert count_parameters(backbone) == 75_477_472
    assert backbone.embedding_size == 2048 and not BACKBONES["cnn14"].has_by_design_map
    assert not list(backbone.fbank.state_dict())  # checkpoints hold Cnn14's weights only


def test_tiny_cnn14_layouts_methods_and_lmac_decoder():
    torch.manual_seed(0)
    backbone = build("cnn14", pretrained=False, config_overrides=TINY_CNN14).eval()
    head = build_head(backbone.embedding_size, 3, kind="linear")
    model = AudioClassifier(backbone, head).eval()
    log_spec = torch.rand(2, 431, 513)
    out = model(log_spec, with_map=True, with_stages=True)
    assert out["scores"].shape == (2, 3) and out["by_design_map"] is None
    assert [s.shape[1] for s in out["stages"]] == [64, 32, 16, 8]
    # the view: log1p of the mel filterbank of the magnitude
    expected = torch.log1p(backbone.fbank(torch.expm1(log_spec)))
    assert torch.allclose(backbone.image(log_spec), expected)
    _, maps = method_maps(model, log_spec, ["gradcam", "saliency", "energy"])
    assert all(m.shape == (2, 431, 513) and torch.isfinite(m).all() for m in maps.values())
    decoder = decoder_for(backbone)
    assert decoder.card() == {"kind": "cnn14psi_stft", "dim": 64}
    logits = decoder(out["stages"], (431, 513))
    mask = torch.sigmoid(logits)
    assert mask.shape == (2, 431, 513) and torch.equal(mask[:, 425:], torch.zeros(2, 6, 513))
    assert type(build_decoder(decoder.card())) is type(decoder)
