"""The one feature module: log-spectrograms, the backbones' image view, and the inverse.

Every entry point imports these; nothing else computes features.

Tensor layout: spectrograms are ``[batch, time, freq]``. For a 5 s clip at 16 kHz with the
paper's STFT (n_fft 1024, window 23.2199 ms = 372 samples, hop 11.6099 ms = 186 samples,
Hamming, centred) that is ``[B, 431, 513]``. ``log_spec = log1p(|STFT|)`` and ``phase`` is the
STFT's angle, both ``[B, 431, 513]``. The image view fed to the backbones is ``[B, 3, 224, 224]``
with time along the height and frequency along the width (three identical channels, no ImageNet
normalisation, as the authors' code).

Example
-------
>>> import torch
>>> features = LogSpectrogram()
>>> wavs = torch.randn(2, 80000)
>>> log_spec, phase = features(wavs)
>>> log_spec.shape, phase.shape
(torch.Size([2, 431, 513]), torch.Size([2, 431, 513]))
>>> to_image(log_spec).shape
torch.Size([2, 3, 224, 224])
>>> features.inverse(log_spec, phase, length=80000).shape
torch.Size([2, 80000])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.processing.features import ISTFT, STFT, spectral_magnitude

from data_prep.audio import SAMPLE_RATE  # the one source of the sample rate

N_FFT = 1024
WIN_LENGTH_MS = 23.2199  # 372 samples at 16 kHz (the paper's "23 ms")
HOP_LENGTH_MS = 11.6099  # 186 samples at 16 kHz (the paper's "11 ms")
HOP_LENGTH = round(SAMPLE_RATE * HOP_LENGTH_MS / 1000)  # in samples, as SpeechBrain's STFT keeps it
IMAGE_SIZE = (224, 224)
# The paper's STFT, as recorded in a run's model.json (``stft``) and read back by inference.
STFT_DEFAULTS = {"n_fft": N_FFT, "win_length": WIN_LENGTH_MS, "hop_length": HOP_LENGTH_MS}


class LogSpectrogram(torch.nn.Module):
    """Log-magnitude spectrogram and phase of a batch of waveforms, and the way back.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the input waveforms.
    n_fft : int
        FFT size (513 frequency bins for 1024).
    win_length : float
        Window length in milliseconds (SpeechBrain's convention).
    hop_length : float
        Hop length in milliseconds.

    Example
    -------
    >>> features = LogSpectrogram()
    >>> log_spec, phase = features(torch.zeros(1, 16000))
    >>> log_spec.shape
    torch.Size([1, 87, 513])
    >>> features.settings
    {'n_fft': 1024, 'win_length': 23.2199, 'hop_length': 11.6099}
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        win_length: float = WIN_LENGTH_MS,
        hop_length: float = HOP_LENGTH_MS,
    ):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.settings = {"n_fft": int(n_fft), "win_length": win_length, "hop_length": hop_length}
        self.stft = STFT(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length
        )
        self.istft = ISTFT(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length
        )

    def forward(
        self, wavs: torch.Tensor, with_phase: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Computes ``log_spec = log1p(|STFT(wavs)|)`` and the phase.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms [batch, samples].
        with_phase : bool
            False: no phase (None), for steps that never invert the spectrogram, e.g. training
            and validation. The phase's ``atan2`` costs twice the STFT and magnitude together.

        Returns
        -------
        log_spec : torch.Tensor
            [batch, time, freq], non-negative.
        phase : torch.Tensor or None
            [batch, time, freq], in radians.

        Example
        -------
        >>> log_spec, phase = LogSpectrogram()(torch.zeros(1, 16000), with_phase=False)
        >>> log_spec.shape, phase
        (torch.Size([1, 87, 513]), None)
        """
        stft = self.stft(wavs.float())  # [B, T, F, 2] (real, imaginary)
        log_spec = torch.log1p(spectral_magnitude(stft, power=0.5))
        if not with_phase:
            return log_spec, None
        phase = torch.atan2(stft[..., 1], stft[..., 0])
        return log_spec, phase

    def inverse(
        self, log_spec: torch.Tensor, phase: torch.Tensor, length: int | None = None
    ) -> torch.Tensor:
        """Waveform of a (masked) log-spectrogram with the original phase.

        ``ISTFT(expm1(log_spec) * exp(j * phase))``: ``expm1`` undoes the ``log1p`` (the authors'
        paper-era code inverted the log-spectrogram without it).

        Arguments
        ---------
        log_spec : torch.Tensor
            [batch, time, freq], e.g. ``mask * log_spec``.
        phase : torch.Tensor
            [batch, time, freq], the phase of the original clip.
        length : int, optional
            Number of output samples (e.g. 80000 for 5 s at 16 kHz).

        Returns
        -------
        torch.Tensor
            Waveforms [batch, samples].
        """
        magnitude = torch.expm1(log_spec.float()).clamp(min=0.0)
        stft = torch.stack(
            (magnitude * torch.cos(phase.float()), magnitude * torch.sin(phase.float())), dim=-1
        )
        return self.istft(stft, sig_length=length)


def to_image(
    log_spec: torch.Tensor, size: tuple[int, int] = IMAGE_SIZE, antialias: bool = False
) -> torch.Tensor:
    """The backbones' image view of a log-spectrogram.

    Bilinear resize of [time, freq] to ``size`` (time along the height), replicated over three
    channels. ``antialias=False`` by default, as ``torch.nn.functional.interpolate`` in the
    authors' code; pass True to low-pass before shrinking.

    Arguments
    ---------
    log_spec : torch.Tensor
        [batch, time, freq].
    size : tuple of int
        Output (height, width).
    antialias : bool
        Whether the bilinear resize anti-aliases.

    Returns
    -------
    torch.Tensor
        [batch, 3, height, width].

    Example
    -------
    >>> to_image(torch.ones(2, 431, 513)).shape
    torch.Size([2, 3, 224, 224])
    """
    image = F.interpolate(
        log_spec.unsqueeze(1), size=size, mode="bilinear", align_corners=False, antialias=antialias
    )
    return image.expand(-1, 3, -1, -1)
