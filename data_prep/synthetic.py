"""A synthetic data set in ESC-50's exact layout, with known time-frequency regions.

Tests, CI and the offline quickstart run on it: no download, no network. Each class has its own
spectro-temporal signature (a centre frequency, a sound kind: tone, noise band, rising or falling
chirp; and a rhythm: one long event, slow pulses or fast pulses), randomly varied per clip, so
that a small model can learn it. Because the generator knows where it put energy, every clip
comes with a ground-truth time-frequency region on the grid of the recipe's log-spectrogram
([431, 513] for 5 s at 16 kHz), and so does every mixture of two clips (one region per source).

Layout written (as ESC-50): ``audio/{fold}-{src_file}-{take}-{target}.wav`` (44.1 kHz, 16-bit, mono)
and ``meta/esc50.csv`` with ESC-50's columns. The per-clip source parameters are also written to
``meta/synthetic_sources.json`` so that regions can be recomputed later.

Example
-------
>>> spec = ClipSpec.random(class_id=3, n_classes=10, rng=np.random.default_rng(0))
>>> wav = render_clip(spec, sample_rate=16000)
>>> wav.shape, wav.dtype
((80000,), dtype('float32'))
>>> region = clip_region(spec)
>>> region.shape, bool(region.any())
((431, 513), True)
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.atomic import atomic_path

logger = logging.getLogger(__name__)

KINDS = ("tone", "noise", "chirp_up", "chirp_down")
RHYTHMS = ("long", "slow_pulses", "fast_pulses")
MIN_FREQ, MAX_FREQ = 400.0, 5000.0
CHIRP_RATIO = 1.6  # a chirp sweeps from f0 / 1.6 to f0 * 1.6 (or back)
NOISE_RATIO = 1.25  # a noise band spans f0 / 1.25 .. f0 * 1.25
BACKGROUND_LEVEL = 0.003  # white background noise, about -50 dB below a full-scale source

# Grid of the recipe's log-spectrogram (recipes/features.py): 16 kHz, n_fft 1024, hop 186, win 372.
GRID_SAMPLE_RATE = 16000
GRID_N_FFT = 1024
GRID_HOP = 186
GRID_WIN = 372


def class_signature(class_id: int, n_classes: int) -> dict:
    """The nominal signature of a class: centre frequency (Hz), kind and rhythm.

    Centre frequencies are log-spaced over [400, 5000] Hz in class order; kinds cycle every class
    and rhythms every four classes, so neighbouring classes differ in more than one property.

    Example
    -------
    >>> class_signature(0, 10)
    {'freq': 400.0, 'kind': 'tone', 'rhythm': 'long'}
    >>> class_signature(5, 10)['kind'], class_signature(5, 10)['rhythm']
    ('noise', 'slow_pulses')
    """
    if not 0 <= class_id < n_classes:
        raise ValueError(f"class_id must be in [0, {n_classes}), got {class_id}")
    position = class_id / max(n_classes - 1, 1)
    freq = MIN_FREQ * (MAX_FREQ / MIN_FREQ) ** position
    return {
        "freq": round(float(freq), 3),
        "kind": KINDS[class_id % len(KINDS)],
        "rhythm": RHYTHMS[(class_id // len(KINDS)) % len(RHYTHMS)],
    }


@dataclass
class ClipSpec:
    """Everything needed to render one synthetic clip and its ground-truth region.

    Arguments
    ---------
    class_id : int
        The class (ESC-50 ``target``).
    kind : str
        One of ``KINDS``.
    freq : float
        Centre frequency of this clip in Hz (the class's, jittered).
    events : list of [float, float]
        Start and end times (s) of the sound events.
    amplitude : float
        Peak amplitude of the source.
    duration : float
        Clip duration in seconds.
    noise_seed : int
        Seed of the noise used by the rendering (noise bands, background).
    """

    class_id: int
    kind: str
    freq: float
    events: list = field(default_factory=list)
    amplitude: float = 0.5
    duration: float = 5.0
    noise_seed: int = 0

    @classmethod
    def random(cls, class_id, n_classes, rng, duration=5.0):
        """Draws a clip of a class: jittered frequency, event times and level."""
        signature = class_signature(class_id, n_classes)
        freq = signature["freq"] * float(rng.uniform(0.97, 1.03))
        rhythm = signature["rhythm"]
        if rhythm == "long":
            start = float(rng.uniform(0.05, 0.2)) * duration
            end = float(rng.uniform(0.75, 0.95)) * duration
            events = [[start, end]]
        else:
            period, length = (0.5, 0.2) if rhythm == "slow_pulses" else (1 / 6, 0.06)
            period *= float(rng.uniform(0.9, 1.1))
            t = float(rng.uniform(0.0, period))
            events = []
            while t + length < duration:
                events.append([t, t + length])
                t += period
        return cls(
            class_id=class_id,
            kind=signature["kind"],
            freq=freq,
            events=[[round(a, 5), round(b, 5)] for a, b in events],
            amplitude=float(rng.uniform(0.3, 0.9)),
            duration=duration,
            noise_seed=int(rng.integers(0, 2**31 - 1)),
        )


def _instantaneous_freq(spec: ClipSpec, t: np.ndarray) -> np.ndarray:
    """Instantaneous frequency (Hz) of a tone or chirp at times ``t`` (inside its events)."""
    if spec.kind == "tone":
        return np.full_like(t, spec.freq)
    freq_inst = np.full_like(t, spec.freq)
    low, high = spec.freq / CHIRP_RATIO, spec.freq * CHIRP_RATIO
    for start, end in spec.events:
        inside = (t >= start) & (t < end)
        progress = (t[inside] - start) / (end - start)
        if spec.kind == "chirp_down":
            progress = 1.0 - progress
        freq_inst[inside] = low * (high / low) ** progress  # exponential sweep
    return freq_inst


def _envelope(spec: ClipSpec, t: np.ndarray, ramp: float = 0.005) -> np.ndarray:
    """Sum of the events' gates with raised-cosine ramps (no clicks).

    ``t`` is increasing (sample times). Each gate is computed only on the samples strictly inside
    its event (outside it the gate is exactly 0 and leaves the envelope as it is), so the result
    is the same as over the whole clip, in a fraction of the time.
    """
    env = np.zeros_like(t)
    for start, end in spec.events:
        lo, hi = np.searchsorted(t, start, side="right"), np.searchsorted(t, end, side="left")
        inside = t[lo:hi]
        rise = np.clip((inside - start) / ramp, 0.0, 1.0)
        fall = np.clip((end - inside) / ramp, 0.0, 1.0)
        gate = np.minimum(rise, fall)
        env[lo:hi] = np.maximum(env[lo:hi], 0.5 - 0.5 * np.cos(np.pi * gate))
    return env


def render_clip(spec: ClipSpec, sample_rate: int = 44100) -> np.ndarray:
    """Renders the waveform of a clip (float32, mono, ``duration * sample_rate`` samples)."""
    n = int(round(spec.duration * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(spec.noise_seed)
    if spec.kind == "noise":
        white = rng.standard_normal(n)
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        band = (freqs >= spec.freq / NOISE_RATIO) & (freqs <= spec.freq * NOISE_RATIO)
        source = np.fft.irfft(spectrum * band, n)
    else:
        phase = 2 * np.pi * np.cumsum(_instantaneous_freq(spec, t)) / sample_rate
        source = np.sin(phase)
    source = source * _envelope(spec, t)
    peak = np.abs(source).max()
    if peak > 0:
        source = source / peak * spec.amplitude
    background = BACKGROUND_LEVEL * rng.standard_normal(n)
    return np.clip(source + background, -1.0, 1.0).astype(np.float32)


def clip_region(
    spec: ClipSpec,
    sample_rate: int = GRID_SAMPLE_RATE,
    n_fft: int = GRID_N_FFT,
    hop_length: int = GRID_HOP,
    win_length: int = GRID_WIN,
) -> np.ndarray:
    """Ground-truth time-frequency region of a clip's source on the log-spectrogram grid.

    A cell (frame, bin) is in the region when the frame's window overlaps an event and the bin
    lies within the window's main lobe (2 * sample_rate / win_length Hz, Hamming) of the band the
    source occupies in that frame. The grid is that of a centred STFT: frame ``i`` is centred on
    sample ``i * hop_length``.

    Returns
    -------
    numpy.ndarray
        Boolean array [time, freq], e.g. [431, 513] for 5 s at 16 kHz.
    """
    n_samples = int(round(spec.duration * sample_rate))
    n_frames = n_samples // hop_length + 1
    n_bins = n_fft // 2 + 1
    frame_times = np.arange(n_frames) * hop_length / sample_rate
    half_window = win_length / 2 / sample_rate
    bin_freqs = np.arange(n_bins) * sample_rate / n_fft
    lobe = 2.0 * sample_rate / win_length

    region = np.zeros((n_frames, n_bins), dtype=bool)
    for start, end in spec.events:
        frames = np.nonzero((frame_times + half_window > start) & (frame_times - half_window < end))
        for frame in frames[0]:
            t_lo = max(frame_times[frame] - half_window, start)
            t_hi = min(frame_times[frame] + half_window, end - 1e-9)
            if spec.kind == "noise":
                f_lo, f_hi = spec.freq / NOISE_RATIO, spec.freq * NOISE_RATIO
            else:
                f_pair = _instantaneous_freq(spec, np.array([t_lo, t_hi]))
                f_lo, f_hi = float(f_pair.min()), float(f_pair.max())
            region[frame] |= (bin_freqs >= f_lo - lobe) & (bin_freqs <= f_hi + lobe)
    return region


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(text)


def generate_synthetic_esc50(
    folder,
    n_classes: int = 10,
    clips_per_class_per_fold: int = 2,
    folds=(1, 2, 3, 4, 5),
    seed: int = 0,
    duration: float = 5.0,
    sample_rate: int = 44100,
) -> list[dict]:
    """Writes a synthetic data set in ESC-50's exact layout into ``folder``.

    Arguments
    ---------
    folder : str or Path
        Target folder; ``audio/`` and ``meta/`` are created in it.
    n_classes : int
        Number of classes (targets 0 .. n_classes - 1, categories ``class_00`` ...).
    clips_per_class_per_fold : int
        Clips of each class in each fold.
    folds : sequence of int
        Folds to populate (ESC-50 has 1..5).
    seed : int
        Seed: the same arguments give byte-identical files.
    duration : float
        Clip length in seconds (ESC-50: 5).
    sample_rate : int
        Sample rate of the written files (ESC-50: 44100).

    Returns
    -------
    list of dict
        One row per clip: the CSV columns plus ``spec`` (the ``ClipSpec`` as a dict).
    """
    folder = Path(folder)
    if n_classes < 1 or clips_per_class_per_fold < 1:
        raise ValueError("n_classes and clips_per_class_per_fold must be >= 1")
    bad = [f for f in folds if not 1 <= int(f) <= 5]
    if bad:
        raise ValueError(f"folds must lie in 1..5 (ESC-50 has five), got {bad}")
    audio_dir, meta_dir = folder / "audio", folder / "meta"
    audio_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.mkdir(parents=True, exist_ok=True)

    rows = []
    src_file = 100000
    for fold in folds:
        for class_id in range(n_classes):
            for index in range(clips_per_class_per_fold):
                rng = np.random.default_rng([seed, int(fold), class_id, index])
                spec = ClipSpec.random(class_id, n_classes, rng, duration=duration)
                src_file += 1
                filename = f"{fold}-{src_file}-A-{class_id}.wav"
                sf.write(
                    audio_dir / filename, render_clip(spec, sample_rate), sample_rate, "PCM_16"
                )
                rows.append(
                    {
                        "filename": filename,
                        "fold": int(fold),
                        "target": class_id,
                        "category": f"class_{class_id:02d}",
                        "esc10": "False",
                        "src_file": str(src_file),
                        "take": "A",
                        "spec": asdict(spec),
                    }
                )

    columns = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    lines = [",".join(columns)]
    lines += [",".join(str(row[c]) for c in columns) for row in rows]
    _atomic_write_text(
        meta_dir / "synthetic_sources.json",
        json.dumps({row["filename"]: row["spec"] for row in rows}, indent=1),
    )
    _atomic_write_text(meta_dir / "esc50.csv", "\n".join(lines) + "\n")
    logger.info("Wrote %d synthetic ESC-50 clips (%d classes) to %s", len(rows), n_classes, folder)
    return rows


def load_specs(folder) -> dict[str, ClipSpec]:
    """Reads the clip specifications of a synthetic set (filename -> ``ClipSpec``)."""
    path = Path(folder) / "meta" / "synthetic_sources.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {folder} is not a synthetic set written by generate_synthetic_esc50"
        )
    with open(path) as handle:
        return {name: ClipSpec(**spec) for name, spec in json.load(handle).items()}


def render_mixture(specs: list[ClipSpec], sample_rate: int = 44100) -> tuple[np.ndarray, list]:
    """Sums the renderings of several clips and returns one ground-truth region per source.

    Returns
    -------
    waveform : numpy.ndarray
        The mixture (float32, clipped to [-1, 1]).
    regions : list of numpy.ndarray
        ``clip_region`` of each source, in the order of ``specs``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> specs = [ClipSpec.random(0, 10, rng), ClipSpec.random(9, 10, rng)]
    >>> mixture, regions = render_mixture(specs, sample_rate=16000)
    >>> mixture.shape, len(regions), bool((regions[0] & regions[1]).any())
    ((80000,), 2, False)
    """
    waveform = np.sum([render_clip(spec, sample_rate) for spec in specs], axis=0)
    regions = [clip_region(spec) for spec in specs]
    return np.clip(waveform, -1.0, 1.0).astype(np.float32), regions
