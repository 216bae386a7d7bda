"""The synthetic ESC-50 generator: exact layout, determinism, learnable classes, known regions."""

import csv
import re

import numpy as np
import soundfile as sf
import torch

from data_prep.audio import load_clip
from data_prep.synthetic import (
    ClipSpec,
    generate_synthetic_esc50,
    load_specs,
    render_mixture,
)
from recipes.features import LogSpectrogram

ESC50_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def test_layout_is_esc50s(synthetic_esc50):
    folder, rows = synthetic_esc50
    with open(folder / "meta" / "esc50.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ESC50_COLUMNS
        csv_rows = list(reader)
    assert len(csv_rows) == len(rows) == 3 * 5
    for row in csv_rows:
        parts = re.fullmatch(r"(\d)-(\d+)-([A-Z])-(\d+)\.wav", row["filename"]).groups()
        assert parts == (row["fold"], row["src_file"], row["take"], row["target"])
        info = sf.info(folder / "audio" / row["filename"])
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (
            44100,
            1,
            "PCM_16",
            5 * 44100,
        )
    assert sorted(p.name for p in (folder / "audio").iterdir()) == sorted(
        r["filename"] for r in csv_rows
    )
    assert {int(r["fold"]) for r in csv_rows} == {1, 2, 3, 4, 5}


def test_same_seed_same_bytes_other_seed_other_clips(tmp_path):
    kwargs = dict(n_classes=2, clips_per_class_per_fold=1, folds=(1,), duration=1.0)
    generate_synthetic_esc50(tmp_path / "a", seed=7, **kwargs)
    generate_synthetic_esc50(tmp_path / "b", seed=7, **kwargs)
    generate_synthetic_esc50(tmp_path / "c", seed=8, **kwargs)
    for name in (tmp_path / "a" / "audio").iterdir():
        same = (tmp_path / "b" / "audio" / name.name).read_bytes()
        other = (tmp_path / "c" / "audio" / name.name).read_bytes()
        assert name.read_bytes() == same and name.read_bytes() != other
    assert load_specs(tmp_path / "a") == load_specs(tmp_path / "b")


def test_classes_are_separable_by_a_nearest_centroid(tmp_path):
    """Learnability: the mean spectrum of fold 1 classifies fold 2 almost perfectly."""
    rows = generate_synthetic_esc50(
        tmp_path, n_classes=10, clips_per_class_per_fold=2, folds=(1, 2), duration=2.0
    )
    features = LogSpectrogram()
    wavs = torch.stack([load_clip(tmp_path / "audio" / r["filename"], duration=2.0) for r in rows])
    profiles = features(wavs)[0].mean(dim=1)  # [N, freq]
    profiles = profiles / profiles.norm(dim=1, keepdim=True)
    targets = torch.tensor([r["target"] for r in rows])
    folds = torch.tensor([r["fold"] for r in rows])
    centroids = torch.stack([profiles[(folds == 1) & (targets == c)].mean(0) for c in range(10)])
    predicted = (profiles[folds == 2] @ centroids.T).argmax(dim=1)
    accuracy = (predicted == targets[folds == 2]).float().mean().item()
    assert accuracy >= 0.9


def test_mixture_regions_separate_the_sources():
    rng = np.random.default_rng(3)
    specs = [ClipSpec.random(1, 10, rng), ClipSpec.random(8, 10, rng)]
    mixture, regions = render_mixture(specs, sample_rate=16000)
    log_spec, _ = LogSpectrogram()(torch.from_numpy(mixture)[None])
    energy = torch.expm1(log_spec[0]).pow(2)
    both = torch.from_numpy(regions[0] | regions[1])
    assert not (regions[0] & regions[1]).any()
    assert energy[both].sum() / energy.sum() > 0.9
    for region in regions:  # each source puts real energy in its own region
        assert energy[torch.from_numpy(region)].sum() / energy.sum() > 0.1


def test_envelope_equals_the_whole_clip_formula_exactly():
    """The envelope, computed inside each event only, is bit for bit the gate formula over the
    whole clip (so the synthetic set's bytes did not change): every rhythm and kind."""
    from data_prep.synthetic import _envelope

    t = np.arange(int(5.0 * 44100)) / 44100
    for class_id in range(12):
        spec = ClipSpec.random(class_id, 12, np.random.default_rng(class_id))
        reference = np.zeros_like(t)
        for start, end in spec.events:
            rise = np.clip((t - start) / 0.005, 0.0, 1.0)
            fall = np.clip((end - t) / 0.005, 0.0, 1.0)
            gate = np.minimum(rise, fall)
            reference = np.maximum(reference, 0.5 - 0.5 * np.cos(np.pi * gate))
        assert np.array_equal(_envelope(spec, t), reference), spec
