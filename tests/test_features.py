"""The feature module: shapes, the image view, and the inverse."""

import numpy as np
import pytest
import torch

from data_prep.audio import load_clip
from data_prep.synthetic import ClipSpec, clip_region, render_clip
from recipes.features import LogSpectrogram, to_image


@pytest.fixture(scope="module")
def features():
    return LogSpectrogram()


def test_stft_sizes_match_the_paper(features):
    assert features.stft.win_length == 372 and features.stft.hop_length == 186
    assert features.stft.n_fft == 1024


def test_five_seconds_give_431_by_513(features):
    log_spec, phase = features(torch.randn(3, 80000))
    assert log_spec.shape == phase.shape == (3, 431, 513)
    assert torch.isfinite(log_spec).all() and (log_spec >= 0).all()
    assert phase.abs().max() <= np.pi + 1e-6


def test_image_view_is_three_identical_channels(features):
    log_spec, _ = features(torch.randn(2, 80000))
    image = to_image(log_spec)
    assert image.shape == (2, 3, 224, 224)
    assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 0], image[:, 2])
    # time along the height: a loud first half in time shows in the top half of the image
    wav = torch.cat([torch.randn(1, 40000), torch.zeros(1, 40000)], dim=1)
    image = to_image(features(wav)[0])
    assert image[0, 0, :100].mean() > 10 * image[0, 0, 124:].mean()


def test_antialias_is_an_explicit_choice(features):
    log_spec, _ = features(torch.randn(1, 80000))
    assert not torch.allclose(to_image(log_spec), to_image(log_spec, antialias=True))


def _snr_db(reference, estimate):
    noise = reference - estimate
    return 10 * torch.log10(reference.pow(2).sum() / noise.pow(2).sum()).item()


def test_all_ones_mask_reconstructs_the_waveform(features, synthetic_esc50):
    folder, rows = synthetic_esc50
    wavs = torch.stack([load_clip(folder / "audio" / row["filename"]) for row in rows[:3]])
    log_spec, phase = features(wavs)
    mask = torch.ones_like(log_spec)
    rebuilt = features.inverse(mask * log_spec, phase, length=wavs.shape[1])
    assert rebuilt.shape == wavs.shape
    for wav, est in zip(wavs, rebuilt, strict=True):
        assert _snr_db(wav, est) > 30


def test_all_zeros_mask_gives_silence(features):
    log_spec, phase = features(torch.randn(1, 80000))
    assert features.inverse(0 * log_spec, phase, length=80000).abs().max() < 1e-5


@pytest.mark.parametrize("class_id", range(4))  # tone, noise band, chirp up, chirp down
def test_synthetic_region_holds_the_source_energy(features, class_id):
    spec = ClipSpec.random(class_id, 4, np.random.default_rng(class_id), duration=5.0)
    log_spec, _ = features(torch.from_numpy(render_clip(spec, sample_rate=16000))[None])
    energy = torch.expm1(log_spec[0]).pow(2)
    region = torch.from_numpy(clip_region(spec))
    assert region.shape == log_spec.shape[1:]
    share = energy[region].sum() / energy.sum()
    assert share > 0.9, f"only {share:.2f} of the energy lies in the region"
    assert region.float().mean() < 0.2  # and the region is not the whole spectrogram
