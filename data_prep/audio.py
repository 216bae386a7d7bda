"""The one audio pipeline: file -> mono, 16 kHz, peak-normalised, fixed-length waveform.

Every entry point (training, PIQ, interpretation of any file) reads audio through ``load_clip``
and builds its data sets with ``make_datasets``. Files are decoded with soundfile (wav, flac, ogg,
mp3), downmixed to mono, resampled with torchaudio, cut or zero-padded to ``duration`` seconds
(the first ``duration`` seconds are kept) and divided by their absolute peak (a silent clip stays
all zeros). An optional cache keeps the resampled mono signals as ``.npy`` files so that
resampling is not redone every epoch.

Example
-------
>>> import torch
>>> signal = fit_and_normalise(torch.tensor([0.0, 0.5, -2.0]), n_samples=5)
>>> signal
tensor([ 0.0000,  0.2500, -1.0000,  0.0000,  0.0000])
>>> fit_and_normalise(torch.zeros(3), n_samples=2)
tensor([0., 0.])
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import speechbrain as sb
import torch
import torchaudio

from data_prep.atomic import atomic_path

SAMPLE_RATE = 16000
DURATION = 5.0


class AudioReadError(RuntimeError):
    """An audio file that cannot be read; the message names the file."""


def read_audio(path) -> tuple[torch.Tensor, int]:
    """Decodes a file with soundfile; AudioReadError (naming the file) for a missing, unreadable
    or empty file and for one with NaN or infinite samples (``require_finite``).

    Returns
    -------
    signal : torch.Tensor
        [samples, channels], float32.
    sample_rate : int
    """
    if not Path(path).is_file():
        raise AudioReadError(f"Audio file {path} does not exist (or is not a file).")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioReadError(
            f"Cannot decode audio file {path}: {error}. Check that it is a readable wav, flac, "
            "ogg or mp3 file (re-download or remove it)."
        ) from error
    if data.shape[0] == 0:
        raise AudioReadError(f"Audio file {path} holds no samples.")
    require_finite(data, path)
    return torch.from_numpy(data), int(sample_rate)


def require_finite(samples, path) -> None:
    """Raises AudioReadError naming ``path`` when ``samples`` hold NaN or infinite values.

    A float WAV can store them; they would turn the clip's peak normalisation, its spectrogram
    and every score into NaN. Readers of a file in blocks can call it on each block.

    Example
    -------
    >>> require_finite(np.zeros(3, dtype=np.float32), "ok.wav")
    >>> try:
    ...     require_finite(np.array([0.0, np.nan]), "bad.wav")
    ... except AudioReadError as error:
    ...     print(error)
    Audio file bad.wav has non-finite samples (1 NaN or infinite): replace or remove the file.
    """
    finite = np.isfinite(samples)
    if not finite.all():
        count = finite.size - int(np.count_nonzero(finite))
        raise AudioReadError(
            f"Audio file {path} has non-finite samples ({count} NaN or infinite): replace or "
            "remove the file."
        )


def to_mono_resampled(
    signal: torch.Tensor, sample_rate: int, target_rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Averages the channels of a [samples, channels] signal and resamples it.

    Example
    -------
    >>> to_mono_resampled(torch.ones(48000, 2), 48000).shape
    torch.Size([16000])
    """
    mono = signal.mean(dim=1)
    if sample_rate != target_rate:
        mono = torchaudio.functional.resample(mono, sample_rate, target_rate)
    return mono


def audio_frames(path) -> tuple[int, int]:
    """``(frames, sample_rate)`` of an audio file from its header, without decoding it;
    AudioReadError (naming the file) for a missing, unreadable or empty one."""
    if not Path(path).is_file():
        raise AudioReadError(f"Audio file {path} does not exist (or is not a file).")
    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioReadError(
            f"Cannot decode audio file {path}: {error}. Check that it is a readable wav, flac, "
            "ogg or mp3 file (re-download or remove it)."
        ) from error
    if info.frames == 0:
        raise AudioReadError(f"Audio file {path} holds no samples.")
    return int(info.frames), int(info.samplerate)


def read_audio_blocks(path, block_frames: int):
    """Decodes a file in consecutive blocks of ``block_frames`` frames (the last one shorter),
    so that a long file never sits in memory whole; each block is checked by
    ``require_finite``. Yields float32 tensors [frames, channels]; ``read_audio`` on the whole
    file equals their concatenation.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.wav"
    >>> sf.write(str(path), np.linspace(-1, 1, 2500, dtype=np.float32), 8000, subtype="FLOAT")
    >>> [tuple(block.shape) for block in read_audio_blocks(path, 1000)]
    [(1000, 1), (1000, 1), (500, 1)]
    """
    audio_frames(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            for data in handle.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                require_finite(data, path)
                yield torch.from_numpy(data.copy())
    except AudioReadError:
        raise
    except Exception as error:  # a file damaged after its header
        raise AudioReadError(
            f"Cannot decode audio file {path}: {error}. Check that it is a readable wav, flac, "
            "ogg or mp3 file (re-download or remove it)."
        ) from error


def resample_blocks(blocks, sample_rate: int, target_rate: int = SAMPLE_RATE):
    """``to_mono_resampled`` of a signal given in consecutive blocks ([samples, channels]),
    block by block: yields mono blocks at ``target_rate`` whose concatenation equals
    ``to_mono_resampled`` of the whole signal (within float rounding).

    torchaudio's sinc resampler maps each period of ``sample_rate / gcd`` input samples to
    ``target_rate / gcd`` output samples from the inputs within ``width`` samples of the period;
    each block is resampled with that much context on both sides, on period boundaries, and the
    outputs of the context dropped. Memory: one block and its context.

    Example
    -------
    >>> signal = torch.randn(44100, 2, generator=torch.Generator().manual_seed(0))
    >>> parts = list(resample_blocks(signal.split(5000), 44100, 16000))
    >>> whole = to_mono_resampled(signal, 44100, 16000)
    >>> torch.allclose(torch.cat(parts), whole, atol=1e-5), len(whole)
    (True, 16000)
    """
    if sample_rate == target_rate:
        for block in blocks:
            yield block.mean(dim=1)
        return
    divisor = math.gcd(int(sample_rate), int(target_rate))
    period, out_period = sample_rate // divisor, target_rate // divisor
    # torchaudio's kernel half-width (lowpass_filter_width 6, rolloff 0.99), in input samples
    width = math.ceil(6 * period / (0.99 * min(period, out_period)))
    left = math.ceil(width / period) * period  # context before a block, whole periods
    buffer, buffer_start, next_period = torch.zeros(0), 0, 0
    for block in blocks:
        buffer = torch.cat([buffer, block.mean(dim=1)])
        end = buffer_start + buffer.shape[0]
        done = (end - width) // period  # periods whose inputs (and context) have arrived
        if done <= next_period:
            continue
        start = max(next_period * period - left, 0)
        segment = buffer[start - buffer_start : done * period + width - buffer_start]
        offset = next_period - start // period
        out = torchaudio.functional.resample(segment, sample_rate, target_rate)
        yield out[offset * out_period : (offset + done - next_period) * out_period]
        next_period = done
        keep = max(next_period * period - left, 0)
        buffer, buffer_start = buffer[keep - buffer_start :], keep
    start = max(next_period * period - left, 0)
    if buffer_start + buffer.shape[0] > next_period * period:
        out = torchaudio.functional.resample(
            buffer[start - buffer_start :], sample_rate, target_rate
        )
        yield out[(next_period - start // period) * out_period :]


def fit_and_normalise(signal: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Cuts or zero-pads a 1-D signal to ``n_samples`` and divides it by its absolute peak."""
    if signal.shape[0] >= n_samples:
        signal = signal[:n_samples]
    else:
        signal = torch.nn.functional.pad(signal, (0, n_samples - signal.shape[0]))
    peak = signal.abs().max()
    if peak > 0:
        signal = signal / peak
    return signal


class ResampleCache:
    """Keeps resampled mono signals as ``.npy`` files, keyed by path, size and mtime.

    A cached entry is used only while the source file has the same size and modification time;
    entries are written atomically, so an interrupted run never leaves a partial file behind.

    Arguments
    ---------
    folder : str or Path
        Where the cache lives (one folder per sample rate is advisable).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _entry(self, path) -> Path:
        path = Path(path)
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self.folder / f"{path.stem}-{digest}.npy"

    def get(self, path) -> torch.Tensor | None:
        """The cached signal of ``path``, or None."""
        entry = self._entry(path)
        if not entry.is_file():
            return None
        return torch.from_numpy(np.load(entry))

    def put(self, path, signal: torch.Tensor) -> None:
        """Stores the signal of ``path``."""
        with atomic_path(self._entry(path)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, signal.numpy().astype(np.float32))


def load_clip(
    path,
    sample_rate: int = SAMPLE_RATE,
    duration: float = DURATION,
    cache: ResampleCache | None = None,
) -> torch.Tensor:
    """Reads a file as the recipes' input: mono, ``sample_rate``, peak-normalised, fixed length.

    Arguments
    ---------
    path : str or Path
        Audio file (any format and sample rate soundfile reads; mono or multi-channel).
    sample_rate : int
        Output sample rate.
    duration : float
        Output length in seconds (80000 samples for 5 s at 16 kHz).
    cache : ResampleCache, optional
        Where resampled signals are kept between epochs.

    Returns
    -------
    torch.Tensor
        [samples], float32, peak 1 (or all zeros for silence).
    """
    mono = cache.get(path) if cache is not None else None
    if mono is None:
        signal, file_rate = read_audio(path)
        mono = to_mono_resampled(signal, file_rate, sample_rate)
        if cache is not None:
            cache.put(path, mono)
    return fit_and_normalise(mono, int(round(duration * sample_rate)))


def make_datasets(
    manifests: dict,
    data_folder,
    sample_rate: int = SAMPLE_RATE,
    duration: float = DURATION,
    cache_folder=None,
) -> dict:
    """SpeechBrain data sets of the manifests written by ``data_prep.esc50.prepare_esc50``.

    Each item provides ``id``, ``signal`` ([samples]), ``label`` (int, the contiguous class index
    the classifier predicts), ``target`` (int, the data set's own class id, e.g. ESC-50's) and
    ``class_name``. ``{data_root}`` in the manifests' paths is replaced by ``data_folder``.

    Arguments
    ---------
    manifests : dict
        Split name -> manifest JSON path.
    data_folder : str or Path
        The data set root.
    sample_rate, duration : see ``load_clip``.
    cache_folder : str or Path, optional
        Folder of the resample cache; None disables it.

    Returns
    -------
    dict
        Split name -> ``speechbrain.dataio.dataset.DynamicItemDataset``, or None for a split whose
        manifest is empty (no validation folds).
    """
    cache = ResampleCache(Path(cache_folder) / str(sample_rate)) if cache_folder else None

    @sb.utils.data_pipeline.takes("path")
    @sb.utils.data_pipeline.provides("signal")
    def audio_pipeline(path):
        return load_clip(path, sample_rate=sample_rate, duration=duration, cache=cache)

    datasets = {}
    for split, manifest in manifests.items():
        if not json.loads(Path(manifest).read_text(encoding="utf-8")):
            datasets[split] = None
            continue
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=str(manifest),
            replacements={"data_root": str(data_folder)},
            dynamic_items=[audio_pipeline],
            output_keys=["id", "signal", "label", "target", "class_name"],
        )
    return datasets
