"""Training-time pieces of the from-scratch recipes (``hparams/esc10_*.yaml``): data
augmentation, the learning-rate schedule and the loss. The paper's recipes do not use them,
except ``DropChunk`` and ``DropFreq`` (SpeechBrain's, made fast).

- ``RandomRoll``: each waveform of a batch shifted in time by its own random amount (circular);
- ``mixup``: convex combinations of pairs of log-spectrograms, with both labels kept;
- ``WarmupCosine``: linear warm-up, then cosine decay, as a function of training progress
  (epochs, fractional), so a resumed run continues the same curve;
- ``DropChunk``: SpeechBrain's ``DropChunk`` with its chunks zeroed in one indexing operation
  instead of a Python loop (the same random draws, the same output);
- ``DropFreq``: SpeechBrain's ``DropFreq`` (the same random draws, the same notch filter) with
  the filter applied to a [clips, 1, samples] tensor in PyTorch's usual layout: 8x faster on an
  AVX2-only CPU, equal within float rounding;
- ``AdditiveMarginSoftmax``: CosFace's additive margin softmax on cosine scores, with optional
  label smoothing.

Example
-------
>>> import torch
>>> roll = RandomRoll(max_shift=0.5)
>>> wavs, lens = roll(torch.arange(8.0).expand(2, 8), torch.ones(2))
>>> sorted(wavs[0].tolist())
[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
>>> schedule = WarmupCosine(lr=1e-3, warmup_epochs=2, total_epochs=10)
>>> [round(schedule.lr_at(p), 6) for p in (0.0, 1.0, 2.0, 6.0, 10.0)]
[0.0, 0.0005, 0.001, 0.0005, 0.0]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from speechbrain.augment import time_domain
from speechbrain.processing.signal_processing import convolve1d, notch_filter

# The additive-margin softmax scale of training: inference shows softmax(SCORE_SCALE * cosines)
# (a run's model.json records its own ``score_scale``).
SCORE_SCALE = 30.0


class RandomRoll(torch.nn.Module):
    """Shifts each waveform of a batch in time by its own random number of samples, circularly.

    Arguments
    ---------
    max_shift : float
        The largest shift, as a fraction of the clip's length (0.5: up to half the clip, either
        way).
    """

    def __init__(self, max_shift: float = 0.5):
        super().__init__()
        if not 0.0 <= max_shift <= 1.0:
            raise ValueError(f"max_shift must be in [0, 1], got {max_shift}")
        self.max_shift = max_shift

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor):
        """``wavs`` [batch, samples] rolled per clip; ``lengths`` unchanged."""
        n_samples = wavs.shape[1]
        limit = int(self.max_shift * n_samples)
        if limit == 0:
            return wavs, lengths
        shifts = torch.randint(-limit, limit + 1, (wavs.shape[0], 1), device=wavs.device)
        index = (torch.arange(n_samples, device=wavs.device).unsqueeze(0) - shifts) % n_samples
        return wavs.gather(1, index), lengths


class DropChunk(time_domain.DropChunk):
    """SpeechBrain's ``DropChunk``, its chunks zeroed all at once.

    The paper's recipes drop 1000-2000 chunks of 1-5 samples from every clip; SpeechBrain zeroes
    them one slice assignment at a time, a Python loop that took 150 ms per batch of 8 clips
    (45 % of a quickstart training epoch, AVX-512 and emulated AVX2 alike). This subclass makes
    the same random draws in the same order (``torch.randint`` for the counts, then per clip the
    lengths and the starts) and zeroes the same samples with one index assignment: the output
    equals SpeechBrain's exactly (tested). With ``noise_factor`` (chunks filled with noise) it
    is SpeechBrain's own loop.

    Example
    -------
    >>> drop = DropChunk(drop_length_low=1, drop_length_high=5, drop_count_low=10,
    ...                  drop_count_high=20)
    >>> _ = torch.manual_seed(0)
    >>> ours = drop(torch.ones(2, 1000), torch.ones(2))
    >>> _ = torch.manual_seed(0)
    >>> theirs = time_domain.DropChunk(1, 5, 10, 20)(torch.ones(2, 1000), torch.ones(2))
    >>> torch.equal(ours, theirs), bool((ours == 0).any())
    (True, True)
    """

    def forward(self, waveforms, lengths):
        if self.noise_factor:
            return super().forward(waveforms, lengths)
        lengths = (lengths * waveforms.size(1)).long()
        batch_size = waveforms.size(0)
        dropped = waveforms.clone()
        drop_times = torch.randint(
            low=self.drop_count_low, high=self.drop_count_high + 1, size=(batch_size,)
        )
        rows, columns = [], []
        for i in range(batch_size):
            if drop_times[i] == 0:
                continue
            length = torch.randint(
                low=self.drop_length_low, high=self.drop_length_high + 1, size=(drop_times[i],)
            )
            start_min = self.drop_start
            if start_min < 0:
                start_min += lengths[i]
            start_max = self.drop_end
            if start_max is None:
                start_max = lengths[i]
            if start_max < 0:
                start_max += lengths[i]
            start_max = max(0, start_max - length.max())
            start = torch.randint(low=start_min, high=start_max + 1, size=(drop_times[i],))
            # the samples start .. start + length - 1 of every chunk, as the slices would
            offsets = torch.arange(int(length.max()))
            index = start.unsqueeze(1) + offsets
            keep = (offsets < length.unsqueeze(1)) & (index < waveforms.size(1))
            columns.append(index[keep])
            rows.append(torch.full_like(columns[-1], i))
        if rows:
            dropped[torch.cat(rows), torch.cat(columns)] = 0.0
        return dropped


class DropFreq(time_domain.DropFreq):
    """SpeechBrain's ``DropFreq``, its filter applied in PyTorch's usual layout.

    SpeechBrain convolves the batch as [clips, samples, 1] transposed to [clips, 1, samples]: a
    view whose strides oneDNN reads as channels-last, for which it picks a slow kernel on
    CPUs without AVX-512. On the 2-core AVX2-only AMD EPYC that was 250 ms per batch of 8
    clips, 47 % of a quickstart training epoch; the same 101-tap filter on the same samples
    laid out as [clips, 1, samples] takes 30 ms. This subclass makes the same random draws in
    the same order (the number of notches, then their frequencies) and builds the same filter
    with SpeechBrain's own functions; only the final convolution's input layout differs, so the
    output equals SpeechBrain's within float rounding (about 1e-6 of the signal's scale), not
    bit for bit (tested).

    Example
    -------
    >>> drop = DropFreq(drop_freq_low=0, drop_freq_high=1, drop_freq_count_low=1,
    ...                 drop_freq_count_high=3, drop_freq_width=0.05)
    >>> clips = torch.randn(2, 16000)
    >>> _ = torch.manual_seed(0)
    >>> ours = drop(clips)
    >>> _ = torch.manual_seed(0)
    >>> theirs = time_domain.DropFreq(0, 1, 1, 3, 0.05)(clips)
    >>> ours.shape, torch.allclose(ours, theirs, atol=1e-5)
    (torch.Size([2, 16000]), True)
    """

    FILTER_LENGTH = 101  # SpeechBrain's, fixed inside its forward

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``waveforms`` [batch, time] -> the same shape, filtered. [batch, time, channels]
        goes through SpeechBrain's own forward (which reshapes, rather than transposes, the
        channels into the batch: kept as theirs, not used by these recipes)."""
        if waveforms.dim() != 2:
            return super().forward(waveforms)
        drop_count = torch.randint(
            low=self.drop_freq_count_low, high=self.drop_freq_count_high + 1, size=(1,)
        )
        drop_range = self.drop_freq_high - self.drop_freq_low
        drop_frequency = (torch.rand(drop_count) * drop_range + self.drop_freq_low).clamp(
            min=self.epsilon
        )
        pad = self.FILTER_LENGTH // 2
        drop_filter = torch.zeros(1, self.FILTER_LENGTH, 1, device=waveforms.device)
        drop_filter[0, pad, 0] = 1
        for frequency in drop_frequency:
            notch = notch_filter(frequency, self.FILTER_LENGTH, self.drop_freq_width)
            drop_filter = convolve1d(drop_filter, notch.to(waveforms.device), pad)
        # [batch, time] -> [batch, 1, time] with PyTorch's usual strides
        signals = waveforms.reshape(waveforms.shape[0], 1, waveforms.shape[1]).contiguous()
        kernel = drop_filter.reshape(1, 1, self.FILTER_LENGTH).to(waveforms.dtype)
        return F.conv1d(signals, kernel, padding=pad).reshape(waveforms.shape)


def mixup(log_spec: torch.Tensor, labels: torch.Tensor, alpha: float):
    """Mixes each clip with another clip of the batch (Zhang et al., 2018).

    ``lam ~ Beta(alpha, alpha)``, one per batch; the batch is mixed with a permutation of itself.

    Arguments
    ---------
    log_spec : torch.Tensor
        [batch, time, freq].
    labels : torch.Tensor
        [batch] class indices.
    alpha : float
        The Beta distribution's parameter (> 0).

    Returns
    -------
    mixed : torch.Tensor
        ``lam * log_spec + (1 - lam) * log_spec[perm]``.
    labels_b : torch.Tensor
        ``labels[perm]``, the second label of each mixed clip.
    lam : float
        The weight of the clip's own label.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> mixed, labels_b, lam = mixup(torch.ones(4, 3, 2), torch.arange(4), alpha=0.4)
    >>> mixed.shape, sorted(labels_b.tolist()), 0.0 <= lam <= 1.0
    (torch.Size([4, 3, 2]), [0, 1, 2, 3], True)
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(log_spec.shape[0], device=log_spec.device)
    return lam * log_spec + (1.0 - lam) * log_spec[perm], labels[perm], lam


class WarmupCosine:
    """Learning rate ``lr`` after a linear warm-up, decaying to ``min_lr`` along a cosine.

    The rate is a function of the training progress in epochs (``epoch - 1 + batch / batches``),
    which a checkpoint's epoch counter restores: the schedule itself holds no state.

    Arguments
    ---------
    lr : float
        The peak learning rate, reached after ``warmup_epochs``.
    warmup_epochs : float
        Length of the linear warm-up from 0.
    total_epochs : float
        Where the cosine reaches ``min_lr``.
    min_lr : float
        The final rate.
    """

    def __init__(self, lr: float, warmup_epochs: float, total_epochs: float, min_lr: float = 0.0):
        if not 0 <= warmup_epochs < total_epochs:
            raise ValueError(
                f"need 0 <= warmup_epochs < total_epochs, got {warmup_epochs}, {total_epochs}"
            )
        self.lr, self.min_lr = float(lr), float(min_lr)
        self.warmup_epochs, self.total_epochs = float(warmup_epochs), float(total_epochs)

    def lr_at(self, progress: float) -> float:
        """The rate after ``progress`` epochs of training."""
        if progress < self.warmup_epochs:
            return self.lr * progress / self.warmup_epochs
        fraction = min(
            1.0, (progress - self.warmup_epochs) / (self.total_epochs - self.warmup_epochs)
        )
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * fraction))

    def set_progress(self, optimizer: torch.optim.Optimizer, progress: float) -> float:
        """Sets the rate of every parameter group of ``optimizer``; returns it."""
        lr = self.lr_at(progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


class AdditiveMarginSoftmax(torch.nn.Module):
    """CosFace's additive margin softmax loss on cosine scores, with label smoothing.

    ``loss = CE(scale * (cos - margin * onehot(y)), y)``, the smoothed cross-entropy of PyTorch
    (``label_smoothing``). SpeechBrain's ``compute_cost`` convention: predictions
    [batch, 1, classes], targets [batch, 1].

    Arguments
    ---------
    margin : float
        The additive margin on the target class's cosine.
    scale : float
        The cosine scale.
    label_smoothing : float
        Share of the target mass spread over all classes.

    Example
    -------
    >>> loss = AdditiveMarginSoftmax(margin=0.0, scale=1.0)
    >>> cos = torch.tensor([[[0.0, 0.0]]])
    >>> round(loss(cos, torch.tensor([[1]])).item(), 4)  # log 2
    0.6931
    """

    def __init__(
        self, margin: float = 0.2, scale: float = SCORE_SCALE, label_smoothing: float = 0.0
    ):
        super().__init__()
        self.margin, self.scale, self.label_smoothing = margin, scale, label_smoothing

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``predictions`` [B, 1, C] (cosines) against ``targets`` [B, 1]."""
        cosine = predictions.squeeze(1).float()
        labels = targets.reshape(-1).long()
        onehot = F.one_hot(labels, cosine.shape[-1]).to(cosine.dtype)
        logits = self.scale * (cosine - self.margin * onehot)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
