"""The audio pipeline: any file in, mono 16 kHz peak-normalised 5 s out."""

import numpy as np
import pytest
import soundfile as sf
import torch

from data_prep.audio import AudioReadError, ResampleCache, load_clip, read_audio


def _write(path, seconds, rate, channels, subtype="PCM_16", seed=0):
    rng = np.random.default_rng(seed)
    data = 0.3 * rng.standard_normal((int(seconds * rate), channels)).astype(np.float32)
    sf.write(path, data, rate, subtype=subtype)
    return data


@pytest.mark.parametrize(
    "seconds, rate, channels, suffix",
    [
        (5.0, 48000, 2, "wav"),
        (2.0, 44100, 1, "wav"),
        (7.0, 22050, 1, "flac"),
        (3.0, 16000, 2, "ogg"),
    ],
)
def test_any_clip_comes_out_mono_16k_5s(tmp_path, seconds, rate, channels, suffix):
    path = tmp_path / f"clip.{suffix}"
    subtype = "VORBIS" if suffix == "ogg" else "PCM_16"
    _write(path, seconds, rate, channels, subtype=subtype)
    signal = load_clip(path)
    assert signal.shape == (80000,)
    assert signal.dtype == torch.float32
    assert torch.isfinite(signal).all()
    assert signal.abs().max().item() == pytest.approx(1.0)
    if seconds < 5:  # zero-padded tail
        assert signal[int(seconds * 16000) + 10 :].abs().max() == 0


def test_stereo_is_downmixed_by_averaging(tmp_path):
    rate = 16000
    left = np.sin(2 * np.pi * 440 * np.arange(rate * 5) / rate).astype(np.float32) * 0.5
    stereo = np.stack([left, -left], axis=1)  # averages to silence
    sf.write(tmp_path / "cancel.wav", stereo, rate, subtype="FLOAT")
    assert load_clip(tmp_path / "cancel.wav").abs().max() == 0  # silence stays 0, no NaN


def test_silent_clip_does_not_divide_by_zero(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(44100 * 5, dtype=np.float32), 44100)
    signal = load_clip(tmp_path / "silence.wav")
    assert signal.shape == (80000,) and torch.all(signal == 0)


def test_resampling_keeps_a_tone_at_its_frequency(tmp_path):
    rate = 44100
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(rate * 5) / rate)
    sf.write(tmp_path / "tone.wav", tone.astype(np.float32), rate)
    spectrum = torch.fft.rfft(load_clip(tmp_path / "tone.wav")).abs()
    peak_hz = spectrum.argmax().item() * 16000 / 80000
    assert peak_hz == pytest.approx(1000, abs=1)


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF this is not audio")
    with pytest.raises(AudioReadError, match="broken.wav"):
        read_audio(bad)
    with pytest.raises(AudioReadError, match="missing.wav"):
        load_clip(tmp_path / "missing.wav")


def test_cache_returns_the_same_signal_and_tracks_changes(tmp_path):
    path = tmp_path / "clip.wav"
    _write(path, 5.0, 44100, 1)
    cache = ResampleCache(tmp_path / "cache")
    first = load_clip(path, cache=cache)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert torch.equal(load_clip(path, cache=cache), first)
    # A changed source file is not served from the stale entry.
    _write(path, 6.0, 44100, 1, seed=1)  # other size: a stale entry would be served
    assert not torch.equal(load_clip(path, cache=cache), first)
    assert torch.equal(load_clip(path, cache=cache), load_clip(path))
