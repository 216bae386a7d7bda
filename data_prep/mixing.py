"""Two-source mixtures for the paper's Fig. 2 demo (and localisation tests).

- ``spectral`` (the paper's way, section 4.1): source 1 dominates the lower half of the spectrum
  and source 2 the upper half. Each source keeps its own half and is attenuated by
  ``attenuation_db`` in the other (a brick-wall weighting of its Fourier transform).
- ``concat`` (the authors' code): the first half of the mixture is the first half of source 1,
  the second half is the first half of source 2.

Sources are [samples] signals of the same length and sample rate (e.g. from
``data_prep.audio.load_clip``); the mixture is peak-normalised like the recipes' input.

Example
-------
>>> t = torch.arange(16000) / 16000
>>> low, high = torch.sin(2 * torch.pi * 500 * t), torch.sin(2 * torch.pi * 6000 * t)
>>> mixture, (part_1, part_2) = mix_sources(low, high, sample_rate=16000, mode="spectral")
>>> def same_shape(x, y):
...     return torch.allclose(x / x.abs().max(), y / y.abs().max(), atol=1e-2)
>>> same_shape(part_1, low), same_shape(part_2, high)
(True, True)
>>> round(float(mixture.abs().max()), 4)
1.0
"""

from __future__ import annotations

import torch

from data_prep.audio import SAMPLE_RATE

MODES = ("spectral", "concat")


def _band_weighted(signal: torch.Tensor, sample_rate: int, keep_low: bool, split_hz: float, gain):
    spectrum = torch.fft.rfft(signal)
    freqs = torch.fft.rfftfreq(signal.shape[-1], d=1.0 / sample_rate)
    in_band = freqs < split_hz if keep_low else freqs >= split_hz
    weights = torch.where(in_band, torch.ones_like(freqs), torch.full_like(freqs, gain))
    return torch.fft.irfft(spectrum * weights, n=signal.shape[-1])


def mix_sources(
    source_1: torch.Tensor,
    source_2: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    mode: str = "spectral",
    attenuation_db: float = 20.0,
):
    """Mixes two sources; returns ``(mixture, (part_1, part_2))``.

    ``part_1 + part_2`` is the mixture before its peak normalisation, and each part is what its
    source contributes to it (scaled by the same factor as the mixture).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if source_1.shape != source_2.shape or source_1.dim() != 1:
        raise ValueError(
            f"sources must be 1-D of one length, got {tuple(source_1.shape)} and "
            f"{tuple(source_2.shape)}"
        )
    if mode == "spectral":
        gain = 10 ** (-attenuation_db / 20)
        split_hz = sample_rate / 4  # half of the 0 .. sample_rate / 2 spectrum
        part_1 = _band_weighted(source_1, sample_rate, True, split_hz, gain)
        part_2 = _band_weighted(source_2, sample_rate, False, split_hz, gain)
    else:
        half = source_1.shape[0] // 2
        part_1 = torch.cat([source_1[:half], torch.zeros(source_1.shape[0] - half)])
        part_2 = torch.cat([torch.zeros(half), source_2[: source_1.shape[0] - half]])
    mixture = part_1 + part_2
    peak = mixture.abs().max()
    scale = 1.0 / peak if peak > 0 else 1.0
    return mixture * scale, (part_1 * scale, part_2 * scale)
