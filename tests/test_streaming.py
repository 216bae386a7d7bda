"""Long files in bounded memory: the streamed file path equals the whole-file path, reads lazily,
and draws a long file as rows of a minute."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from data_prep.audio import AudioReadError, read_audio_blocks, resample_blocks, to_mono_resampled
from recipes.inference import AudioInterpreter
from recipes.loading import LoadedModel
from recipes.models import TINY_FOCALNET, AudioClassifier, build_embedder, build_head
from recipes.outputs import TimelinePicture, save_wav, write_file_interpretation

CLIP = 80000  # 5 s at 16 kHz


@pytest.fixture(scope="module")
def random_model():
    """A tiny FocalNet with random weights (nothing trained: streaming is about bookkeeping)."""
    torch.manual_seed(0)
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
    classifier = AudioClassifier(embedder, build_head(embedder.embedding_size, n_classes=3))
    return LoadedModel(classifier.eval(), ["dog", "rain", "siren"], ".")


def noise_file(path, seconds, rate, channels=1, seed=0):
    n = int(seconds * rate)
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n, channels)).astype(np.float32)
    signal *= np.linspace(0.05, 0.5, n, dtype=np.float32)[:, None]  # windows of unequal level
    sf.write(str(path), signal, rate, subtype="FLOAT")
    return torch.from_numpy(signal)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_resample_blocks_equal_the_whole_signal(rate):
    signal = torch.randn(rate * 2 + 123, 2, generator=torch.Generator().manual_seed(rate))
    whole = to_mono_resampled(signal, rate, 16000)
    for size in (4999, rate):  # boundaries anywhere, also inside the resampler's period
        parts = torch.cat(list(resample_blocks(signal.split(size), rate, 16000)))
        assert parts.shape == whole.shape
        assert torch.allclose(parts, whole, atol=1e-5)


@pytest.mark.parametrize("method", ["by_design", "gradcam"])
def test_streamed_file_equals_the_whole_file_path(random_model, tmp_path, method):
    """12.3 s of stereo 44.1 kHz, one window a batch and 2 s blocks: the WAV is the same 16-bit
    PCM as ``save_wav`` of ``interpret_waveform``'s; classes, windows and mask share agree."""
    model = AudioInterpreter(random_model, method)
    path = tmp_path / "short.wav"
    signal = noise_file(path, 12.3, 44100, channels=2)
    summary = write_file_interpretation(
        model, path, tmp_path / "out", batch_windows=1, block_seconds=2.0
    )
    whole = model.interpret_waveform(signal, 44100)
    save_wav(whole["interpretation_wave"], tmp_path / "whole.wav")
    streamed_wav = sf.read(summary["outputs"]["wav"], dtype="int16")[0]
    whole_wav = sf.read(str(tmp_path / "whole.wav"), dtype="int16")[0]
    assert streamed_wav.shape == whole_wav.shape == (int(12.3 * 16000),)
    assert np.abs(streamed_wav.astype(np.int32) - whole_wav).max() <= 1
    assert summary["duration_s"] == pytest.approx(12.3)
    assert [row["class"] for row in summary["top"]] == [name for name, _ in whole["top"]]
    for ours, theirs in zip(summary["top"], whole["top"], strict=True):
        assert ours["probability"] == pytest.approx(theirs[1], abs=1e-5)
    assert len(summary["windows"]) == whole["n_windows"] == 3
    for ours, theirs in zip(summary["windows"], whole["windows"], strict=True):
        assert ours == {**theirs, "probability": pytest.approx(theirs["probability"], abs=1e-5)}
    assert summary["mask_share"] == pytest.approx(float(whole["mask"].mean()), abs=1e-6)
    assert summary["picture"] == "three panels"
    on_disk = json.loads((tmp_path / "out" / f"short_{method}.json").read_text())
    assert on_disk["top"] == summary["top"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"short_{method}.{kind}" for kind in ("json", "png", "wav")
    ]


def test_long_file_is_read_lazily_and_drawn_in_rows(random_model, tmp_path):
    """Two minutes and 10 s: when a batch of windows comes out, the reader is at most a batch and
    a block ahead of it (memory does not grow with the length); the picture: a row a minute."""
    model = AudioInterpreter(random_model, "by_design")
    path = tmp_path / "long.wav"
    rate, seconds, batch = 16000, 130.0, 4
    noise_file(path, seconds, rate)
    read = {"samples": 0}

    def counted(blocks):
        for block in blocks:
            read["samples"] += block.shape[0]
            yield block

    block_frames = 2 * CLIP
    parts = model.interpret_blocks(
        counted(read_audio_blocks(path, block_frames)), rate, batch_windows=batch
    )
    emitted, batches = 0, 0
    for part in parts:
        emitted += part["interpretation_wave"].shape[0]
        batches += 1
        assert part["interpretation_wave"].shape[0] <= batch * CLIP
        assert part["log_spec"].shape[0] <= batch * 431
        assert read["samples"] - emitted <= block_frames + batch * CLIP
    assert emitted == int(seconds * rate) and batches == 7  # 26 windows, 4 a batch

    summary = write_file_interpretation(model, path, tmp_path / "out", batch_windows=batch)
    assert summary["picture"] == "rows of 60 s"
    assert len(summary["windows"]) == 26 and summary["windows"][-1]["end_s"] == seconds
    assert sf.info(summary["outputs"]["wav"]).frames == int(seconds * rate)
    assert summary["mask_share"] == pytest.approx(0.1, abs=1e-3)  # q = 0.9 in every window
    assert (tmp_path / "out" / "long_by_design.png").stat().st_size > 10_000


def test_timeline_picture_size_is_fixed_by_its_rows():
    """An hour and ten hours: at most 60 rows, the same pooled arrays (memory independent of
    the length); frames beyond the last row land in it."""
    hour, ten_hours = TimelinePicture(3600.0), TimelinePicture(36000.0)
    assert (hour.rows, hour.row_seconds) == (60, 60)
    assert (ten_hours.rows, ten_hours.row_seconds) == (60, 600)
    assert hour.sums.shape == ten_hours.sums.shape == (2, 60 * 900, 64)
    picture = TimelinePicture(90.0, columns=10, bins=4)
    frames = torch.ones(int(90 * 16000 / 186) + 5, 513)
    picture.add(frames, torch.ones_like(frames), [])
    assert picture.counts.sum() == frames.shape[0]
    means = picture.sums[0] / picture.counts.clamp_min(1)[:, None]
    assert torch.allclose(means[picture.counts > 0], torch.ones(1, dtype=torch.float64))


def test_silent_long_file_is_refused_and_nothing_written(random_model, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(16000 * 7, dtype=np.float32), 16000)
    with pytest.raises(AudioReadError, match="silence.wav.*silent"):
        write_file_interpretation(AudioInterpreter(random_model), path, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())
