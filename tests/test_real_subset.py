"""The real ESC-50 clips in ../shared/data (skipped when absent): manifests and features."""

import torch

from data_prep.audio import make_datasets
from data_prep.esc50 import prepare_esc50
from recipes.features import LogSpectrogram


def test_real_subset_split_and_features(real_subset, tmp_path):
    manifests = prepare_esc50(
        real_subset,
        tmp_path / "manifests",
        train_folds=[2, 3],
        valid_folds=[4],
        test_folds=[5],
        download=False,
    )
    datasets = make_datasets(manifests, real_subset, cache_folder=tmp_path / "cache")
    assert {split: len(data) for split, data in datasets.items()} == {
        "train": 12,
        "valid": 400,
        "test": 2,
    }
    item = datasets["test"][0]
    assert item["signal"].shape == (80000,)
    log_spec, phase = LogSpectrogram()(item["signal"][None])
    assert log_spec.shape == phase.shape == (1, 431, 513)
    assert torch.isfinite(log_spec).all() and log_spec.max() > 0
    # preparing wrote nothing into the (read-only) data folder
    assert sorted(p.name for p in real_subset.iterdir()) == [
        "LICENSE",
        "README.md",
        "audio",
        "meta",
    ]
