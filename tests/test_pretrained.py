"""``pretrained: True`` offline: tiny backbones written with ``save_pretrained`` into a local folder
serve as ``source``, through transformers' real ``from_pretrained`` and ``pretrained_folder``."""

import json
import os

import pytest
import torch
import yaml
from recipe_runs import TINY_BACKBONE_CONFIG, run_script, tiny_args

from recipes.backbones import build


def build_backbone(name, **kwargs):
    """The HuggingFace model inside the registered backbone."""
    return build(name, **kwargs).backbone


HF_BACKBONES = ("focalnet", "vit")


@pytest.fixture(scope="module")
def local_sources(tmp_path_factory):
    """{backbone: folder} of tiny random backbones saved as HuggingFace model folders (the
    HuggingFace ones; CNN14's encoder is a SpeechBrain checkpoint: tests/test_cnn14.py)."""
    root = tmp_path_factory.mktemp("hf_models")
    torch.manual_seed(0)
    sources = {}
    for backbone in HF_BACKBONES:
        config = TINY_BACKBONE_CONFIG[backbone]
        model = build_backbone(backbone, pretrained=False, config_overrides=yaml.safe_load(config))
        model.save_pretrained(root / backbone)
        sources[backbone] = root / backbone
    return sources


@pytest.mark.parametrize("backbone", HF_BACKBONES)
def test_from_pretrained_loads_a_local_folder_offline(
    local_sources, tmp_path, monkeypatch, backbone
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = build_backbone(
        backbone, pretrained=False, config_overrides=yaml.safe_load(TINY_BACKBONE_CONFIG[backbone])
    )
    loaded = build_backbone(
        backbone, source=str(local_sources[backbone]), cache_dir=str(tmp_path), pretrained=True
    )
    reference = type(saved).from_pretrained(str(local_sources[backbone]))
    assert loaded.state_dict().keys() == reference.state_dict().keys()
    assert all(
        torch.equal(value, reference.state_dict()[key])
        for key, value in loaded.state_dict().items()
    )
    with pytest.raises(ValueError, match="only apply with pretrained: False"):
        build_backbone(backbone, source="x", pretrained=True, config_overrides={"embed_dim": 8})


@pytest.mark.parametrize("backbone", HF_BACKBONES)
def test_a_recipe_trains_from_local_pretrained_weights(
    local_sources, tiny_data, tmp_path, backbone
):
    out = tmp_path / "run"
    args = tiny_args(backbone, backbone, tiny_data, out)
    args = [arg for arg in args if not arg.startswith("--backbone_config")]  # fixed by the weights
    args += [
        f"--source={local_sources[backbone]}",
        "--pretrained=True",
        f"--pretrained_folder={tmp_path / 'cache'}",
    ]
    result = run_script("train_classifier.py", args, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 6 and 0 <= metrics["acc"] <= 1
    card = json.loads((out / "model.json").read_text())
    assert card["backbone"] == backbone
