"""recipes.augment: the from-scratch recipes' augmentation, schedule and loss, by known answers."""

import math

import pytest
import torch

from recipes.augment import (
    AdditiveMarginSoftmax,
    DropChunk,
    DropFreq,
    RandomRoll,
    WarmupCosine,
    mixup,
)


def test_random_roll_shifts_each_clip_circularly_within_the_limit():
    torch.manual_seed(0)
    wavs = torch.arange(100.0).expand(16, 100)
    rolled, lengths = RandomRoll(max_shift=0.1)(wavs, torch.ones(16))
    assert torch.equal(lengths, torch.ones(16))
    shifts = set()
    for row in rolled:
        shift = int(row[0].item()) and 100 - int(row[0].item())  # row = roll(arange, shift)
        assert torch.equal(row, torch.roll(torch.arange(100.0), shift))
        assert min(shift, 100 - shift) <= 10 or shift == 0
        shifts.add(shift)
    assert len(shifts) > 1  # one shift per clip, not per batch
    same, _ = RandomRoll(max_shift=0.0)(wavs, torch.ones(16))
    assert torch.equal(same, wavs)
    with pytest.raises(ValueError, match="max_shift"):
        RandomRoll(max_shift=1.5)


def test_mixup_is_a_convex_combination_with_the_permuted_labels():
    torch.manual_seed(3)
    log_spec = torch.rand(6, 4, 5)
    labels = torch.arange(6)
    mixed, labels_b, lam = mixup(log_spec, labels, alpha=0.4)
    partner = log_spec[labels_b]  # labels are the indices, so labels_b is the permutation
    assert torch.allclose(mixed, lam * log_spec + (1 - lam) * partner)
    with pytest.raises(ValueError, match="alpha"):
        mixup(log_spec, labels, alpha=0.0)


def test_warmup_cosine_known_values_and_continuity():
    schedule = WarmupCosine(lr=2e-3, warmup_epochs=5, total_epochs=80, min_lr=1e-5)
    assert schedule.lr_at(0.0) == 0.0
    assert schedule.lr_at(2.5) == pytest.approx(1e-3)
    assert schedule.lr_at(5.0) == pytest.approx(2e-3)
    assert schedule.lr_at(42.5) == pytest.approx(1e-5 + 0.5 * (2e-3 - 1e-5))
    assert schedule.lr_at(80.0) == pytest.approx(1e-5) and schedule.lr_at(200.0) == 1e-5
    steps = [schedule.lr_at(p / 10) for p in range(0, 801)]
    jumps = [abs(a - b) for a, b in zip(steps[:-1], steps[1:], strict=True)]
    assert max(jumps) < 5e-5  # no jump at the end of the warm-up
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert schedule.set_progress(optimizer, 5.0) == optimizer.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="warmup_epochs"):
        WarmupCosine(lr=1e-3, warmup_epochs=10, total_epochs=10)


def test_additive_margin_softmax_known_answers():
    cosine = torch.tensor([[[0.5, 0.1, -0.2]]])
    target = torch.tensor([[0]])
    # margin 0.2, scale 30: -log softmax(30 * [0.3, 0.1, -0.2])[0]
    logits = [9.0, 3.0, -6.0]
    expected = -logits[0] + math.log(sum(math.exp(v) for v in logits))
    loss = AdditiveMarginSoftmax(margin=0.2, scale=30.0)(cosine, target)
    assert loss.item() == pytest.approx(expected, rel=1e-4)  # float32
    # label smoothing 0.3 over 3 classes: 0.8 on the target, 0.1 on each other class
    smoothed = AdditiveMarginSoftmax(margin=0.0, scale=1.0, label_smoothing=0.3)(cosine, target)
    log_z = math.log(sum(math.exp(v) for v in (0.5, 0.1, -0.2)))
    by_hand = -(0.8 * (0.5 - log_z) + 0.1 * (0.1 - log_z) + 0.1 * (-0.2 - log_z))
    assert smoothed.item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize(
    "settings, shape",
    [
        (
            {
                "drop_length_low": 1,
                "drop_length_high": 5,
                "drop_count_low": 1000,
                "drop_count_high": 2000,
            },
            (4, 80000),
        ),  # the paper's recipes
        (
            {
                "drop_length_low": 100,
                "drop_length_high": 1000,
                "drop_count_low": 0,
                "drop_count_high": 3,
                "drop_start": 500,
                "drop_end": -200,
            },
            (6, 16000),
        ),
        (
            {
                "drop_length_low": 3,
                "drop_length_high": 7,
                "drop_count_low": 5,
                "drop_count_high": 9,
            },
            (3, 4000, 2),
        ),  # with channels
    ],
)
def test_drop_chunk_equals_speechbrains(settings, shape):
    """The vectorised DropChunk zeroes exactly SpeechBrain's samples from the same seed, also
    for relative lengths below 1; the random stream is left where SpeechBrain leaves it."""
    from speechbrain.augment.time_domain import DropChunk as SpeechBrainDropChunk

    waves = torch.randn(shape, generator=torch.Generator().manual_seed(1)) + 2.0  # no zeros
    lengths = torch.linspace(0.6, 1.0, shape[0])
    outputs = []
    for module in (DropChunk(**settings), SpeechBrainDropChunk(**settings)):
        torch.manual_seed(7)
        outputs.append((module(waves, lengths), torch.rand(1)))
    (ours, after_ours), (theirs, after_theirs) = outputs
    assert torch.equal(ours, theirs) and torch.equal(after_ours, after_theirs)
    assert (ours == 0).any() or settings["drop_count_low"] == 0


@pytest.mark.parametrize("shape", [(4, 80000), (3, 4000, 2)])
@pytest.mark.parametrize("seed", [0, 5, 11])
def test_drop_freq_equals_speechbrains_within_rounding(shape, seed):
    """The re-laid-out DropFreq makes SpeechBrain's draws (same notches, same random state
    afterwards) and filters the same samples: equal within float rounding, with and without a
    channel axis; a pure tone at a dropped frequency is removed by both alike."""
    from speechbrain.augment.time_domain import DropFreq as SpeechBrainDropFreq

    settings = {
        "drop_freq_low": 0,
        "drop_freq_high": 1,
        "drop_freq_count_low": 1,
        "drop_freq_count_high": 3,
        "drop_freq_width": 0.05,
    }
    waves = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    outputs = []
    for module in (DropFreq(**settings), SpeechBrainDropFreq(**settings)):
        torch.manual_seed(seed)
        outputs.append((module(waves), torch.rand(1)))
    (ours, after_ours), (theirs, after_theirs) = outputs
    assert ours.shape == theirs.shape == waves.shape
    assert torch.equal(after_ours, after_theirs)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-5)
    assert not torch.allclose(ours, waves, atol=1e-3)  # it did filter
    # one notch at 0.25 of Nyquist (2 kHz at 16 kHz): a 2 kHz tone is attenuated
    tone = torch.sin(2 * math.pi * 2000 * torch.arange(16000) / 16000).expand(2, 16000)
    power = tone[:, 200:-200].pow(2).mean()
    for module in (DropFreq(0.25, 0.25, 1, 1, 0.05), SpeechBrainDropFreq(0.25, 0.25, 1, 1, 0.05)):
        kept = module(tone)[:, 200:-200].pow(2).mean() / power
        assert kept < 0.1  # more than 10 dB down (101 taps, width 0.05)
