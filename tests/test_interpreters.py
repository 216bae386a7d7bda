"""Interpretation maps, the quantile mask, FID-I / FA metrics and the output writers."""

import json

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
import torch

from interpreters.maps import (
    attention_map,
    kept_cells,
    modulation_map,
    quantile_mask,
    upsample_map,
)
from interpreters.metrics import (
    MetricsAccumulator,
    interpretation_scores,
    probabilities,
    write_metrics_json,
)
from recipes.features import LogSpectrogram
from recipes.outputs import (
    save_confusion_matrix_png,
    save_interpretation_png,
    save_interpretations,
    save_wav,
)

N_CLASSES = 5


class ToyClassifier:
    """Fixed random linear layer on the mean over time, cosine-normalised; counts its calls."""

    def __init__(self, n_freq: int = 513, n_classes: int = N_CLASSES, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(n_classes, n_freq, generator=generator)
        self.calls = 0

    def __call__(self, log_spec: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        features = torch.nn.functional.normalize(log_spec.mean(dim=1), dim=-1)
        return features @ torch.nn.functional.normalize(self.weight, dim=-1).T


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(4, 431, 513, generator=generator) * 3


# ---------------------------------------------------------------- maps


def test_modulation_map_is_the_channel_l2_norm():
    modulator = torch.zeros(2, 2, 7, 7)
    modulator[:, 0] = 3.0
    modulator[:, 1] = 4.0
    modulator[1, :, 2, 3] = torch.tensor([6.0, 8.0])
    result = modulation_map(modulator)
    assert result.shape == (2, 7, 7) and result.dtype == torch.float32
    assert torch.allclose(result[0], torch.full((7, 7), 5.0))
    assert result[1, 2, 3] == 10.0
    half = modulation_map(torch.full((1, 1024, 7, 7), 300.0, dtype=torch.float16))
    assert torch.isfinite(half).all()  # no fp16 overflow


def test_attention_map_takes_cls_row_and_averages_heads():
    attentions = torch.rand(2, 12, 197, 197)
    result = attention_map(attentions)
    assert result.shape == (2, 14, 14)
    assert torch.allclose(result, attentions[:, :, 0, 1:].mean(dim=1).reshape(2, 14, 14))
    hand = torch.zeros(1, 2, 5, 5)
    hand[0, :, 1:, :] = 99.0  # rows of patch tokens must be ignored
    hand[0, :, 0, 0] = 99.0  # CLS-to-CLS must be ignored
    hand[0, 0, 0, 1:] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    hand[0, 1, 0, 1:] = torch.tensor([3.0, 4.0, 5.0, 6.0])
    assert torch.equal(attention_map(hand), torch.tensor([[[2.0, 3.0], [4.0, 5.0]]]))
    # a tuple of layers (Hugging Face output_attentions): the last layer is used
    assert torch.equal(attention_map((torch.rand(1, 2, 5, 5), hand)), attention_map(hand))


def test_attention_map_rejects_non_square_grids():
    with pytest.raises(ValueError, match="square"):
        attention_map(torch.rand(1, 2, 6, 6))


def test_upsample_shape_and_dtype():
    for side in (7, 14):
        result = upsample_map(torch.rand(3, side, side, dtype=torch.float64))
        assert result.shape == (3, 431, 513) and result.dtype == torch.float32


# ---------------------------------------------------------------- quantile mask


@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9, 0.95])
def test_quantile_mask_keeps_exactly_round_one_minus_q_cells(quantile):
    generator = torch.Generator().manual_seed(2)
    map = upsample_map(torch.rand(3, 7, 7, generator=generator))
    mask = quantile_mask(map, quantile)
    assert mask.shape == (3, 431, 513) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    expected = int((1 - quantile) * 431 * 513 + 0.5)
    assert mask.sum(dim=(1, 2)).tolist() == [expected] * 3
    for clip in range(3):  # the kept cells are the highest of the map
        kept, dropped = map[clip][mask[clip] == 1], map[clip][mask[clip] == 0]
        assert kept.min() >= dropped.max()


def test_quantile_mask_with_heavy_ties_keeps_the_same_area():
    # a clip that is mostly digital silence: 95 % of the energy map is one tied value
    log_spec = torch.zeros(2, 431, 513)
    log_spec[0, 100:110, 50:60] = torch.rand(10, 10) + 1.0  # 100 loud cells
    log_spec[1] = 0.5  # all tied
    mask = quantile_mask(log_spec, 0.9)
    n_kept = int(0.1 * 431 * 513 + 0.5)
    assert mask.sum(dim=(1, 2)).tolist() == [n_kept, n_kept]
    assert mask[0, 100:110, 50:60].all()  # the loud cells first, then tied cells
    # ties are broken the same way every time, and spread over the clip, not one corner
    assert torch.equal(mask, quantile_mask(log_spec.clone(), 0.9))
    first_quarter = mask[1, :108].sum() / n_kept
    assert 0.2 < first_quarter < 0.3


def test_quantile_mask_extremes_and_half_precision():
    map = upsample_map(torch.rand(2, 7, 7)).half()
    assert torch.equal(quantile_mask(map, 0.0), torch.ones(2, 431, 513))
    assert quantile_mask(map, 1.0).sum() == 0  # round(0 * cells) = 0 cells
    assert quantile_mask(map, 0.9).sum(dim=(1, 2)).tolist() == [22110.0, 22110.0]


def test_quantile_mask_is_per_clip():
    map = torch.stack([torch.rand(431, 513), torch.rand(431, 513) + 100.0])
    kept = quantile_mask(map, 0.5).mean(dim=(1, 2))
    assert torch.allclose(kept, torch.full((2,), 0.5), atol=1e-5)


def test_quantile_mask_counts_only_valid_cells():
    # a long file's last window: only its first 100 frames are signal, the rest zero padding
    map = torch.rand(2, 431, 513)
    valid = torch.ones(2, 431, 513, dtype=torch.bool)
    valid[1, 100:] = False
    map[1, 100:] = 10.0  # padding that a map rates highest must still not be chosen
    mask = quantile_mask(map, 0.9, valid=valid)
    assert mask[1, 100:].sum() == 0
    assert mask[1].sum() == int(0.1 * 100 * 513 + 0.5)
    assert torch.equal(mask[0], quantile_mask(map[:1], 0.9)[0])


def test_quantile_mask_large_batches():
    map = torch.rand(40, 431, 513)
    kept = quantile_mask(map, 0.9).sum(dim=(1, 2))
    assert kept.tolist() == [22110.0] * 40


@pytest.mark.parametrize("quantile", [-0.1, 1.01])
def test_quantile_mask_rejects_invalid_orders(quantile):
    with pytest.raises(ValueError, match="quantile"):
        quantile_mask(torch.rand(1, 4, 4), quantile)


# ---------------------------------------------------------------- metrics


def test_probabilities_sum_to_one_without_scale():
    scores = torch.rand(3, N_CLASSES) * 2 - 1
    result = probabilities(scores)
    assert torch.allclose(result.sum(dim=-1), torch.ones(3))
    assert torch.allclose(result, torch.softmax(scores, dim=-1))
    assert torch.allclose(probabilities(scores.unsqueeze(1)), result)  # SpeechBrain [B, 1, n]
    scaled = probabilities(scores, score_scale=30.0)  # the model's real probabilities
    assert torch.allclose(scaled, torch.softmax(30.0 * scores, dim=-1))


def test_all_ones_mask_keeps_prediction(batch):
    classify = ToyClassifier()
    out = interpretation_scores(classify, batch, torch.ones_like(batch), score_scale=30.0)
    assert torch.equal(out["fid_i"], torch.ones(4))
    assert torch.equal(out["fa_mask_in"], torch.zeros(4))
    assert torch.equal(out["pred"], out["pred_int"])
    assert torch.equal(out["x_int"], batch)
    assert torch.allclose(out["p_x"], probabilities(classify(batch)).max(dim=-1).values)


def test_all_zeros_mask_has_zero_mask_out_faithfulness(batch):
    out = interpretation_scores(ToyClassifier(), batch, torch.zeros_like(batch), score_scale=30.0)
    assert torch.equal(out["fa"], torch.zeros(4))
    assert torch.equal(out["x_int"], torch.zeros_like(batch))


def test_faithfulness_matches_hand_computation(batch):
    classify = ToyClassifier()
    mask = quantile_mask(upsample_map(torch.rand(4, 7, 7)), 0.9)
    out = interpretation_scores(classify, batch, mask, score_scale=30.0)
    rows = torch.arange(4)
    for scale, names in ((1.0, ("fa", "fa_mask_in")), (30.0, ("ff", "ff_mask_in"))):
        p_x = probabilities(classify(batch), scale)
        p_int = probabilities(classify(mask * batch), scale)
        p_out = probabilities(classify((1 - mask) * batch), scale)
        c = p_x.argmax(dim=-1)
        assert torch.allclose(out[names[0]], p_x[rows, c] - p_out[rows, c], atol=1e-6)
        assert torch.allclose(out[names[1]], p_x[rows, c] - p_int[rows, c], atol=1e-6)
        assert torch.equal(out["fid_i"], (p_int.argmax(dim=-1) == c).float())  # no scale
        suffix = "" if scale > 1 else "_unscaled"
        gain = torch.relu(p_int[rows, c] - p_x[rows, c]) / (1 - p_x[rows, c])
        assert torch.allclose(out[f"ag{suffix}"], 100 * gain, rtol=1e-3, atol=1e-4)


def test_interpretation_scores_counts_forwards(batch):
    classify = ToyClassifier()
    mask = torch.ones_like(batch)
    interpretation_scores(classify, batch, mask, score_scale=30.0)
    assert classify.calls == 2  # both scales  # x, then cat([x_int, x_out]) as one batch
    scores = classify(batch)
    classify.calls = 0
    interpretation_scores(classify, batch, mask, scores=scores, score_scale=30.0)
    assert classify.calls == 1  # only the batched forward of x_int and x_out


def test_accumulator_summary_on_a_handmade_case():
    accumulator = MetricsAccumulator(3, class_names=["a", "b", "c"])
    accumulator.update(
        targets=torch.tensor([0, 0, 1]),
        pred=torch.tensor([0, 1, 1]),
        fid_i=torch.tensor([1.0, 0.0, 1.0]),
        fa=torch.tensor([0.1, 0.2, 0.3]),
        fa_mask_in=torch.tensor([0.0, 0.1, 0.2]),
    )
    accumulator.update(
        targets=torch.tensor([[1]]),
        pred=torch.tensor([0]),
        fid_i=torch.tensor([1.0]),
        fa=torch.tensor([0.4]),
        fa_mask_in=torch.tensor([0.3]),
    )
    summary = accumulator.summary(quantile=0.9, n_params=123, extra={"method": "by_design"})
    assert summary["acc"] == pytest.approx(0.5)
    assert summary["fid_i"] == pytest.approx(0.75)
    assert summary["fa"] == pytest.approx(0.25)
    assert summary["fa_mask_in"] == pytest.approx(0.15)
    assert summary["n_clips"] == 4
    assert summary["quantile"] == 0.9 and summary["n_params"] == 123
    assert summary["method"] == "by_design"
    assert summary["per_class_acc"] == {"a": 0.5, "b": 0.5, "c": None}
    assert summary["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    confusion, sums = accumulator.state_tensors()
    assert confusion is accumulator.confusion and sums.dtype == torch.float64
    # summing the state of two "processes" (what an all-reduce would do) doubles the counts
    for tensor in accumulator.state_tensors():
        tensor += tensor.clone()
    doubled = accumulator.summary()
    assert doubled["n_clips"] == 8 and doubled["acc"] == pytest.approx(0.5)


def test_accumulator_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        MetricsAccumulator(2).update(
            torch.tensor([0, 1]), torch.tensor([0]), torch.ones(2), torch.ones(2), torch.ones(2)
        )


def test_write_metrics_json_round_trips(tmp_path):
    accumulator = MetricsAccumulator(2, class_names=["dog", "rain"])
    accumulator.update(
        torch.tensor([0, 1]), torch.tensor([0, 0]), torch.ones(2), torch.zeros(2), torch.zeros(2)
    )
    summary = accumulator.summary(quantile=0.5, extra={"tensor_value": torch.tensor(1.5)})
    path = tmp_path / "sub" / "metrics.json"
    write_metrics_json(summary, path)
    loaded = json.loads(path.read_text())
    assert loaded == {**summary, "tensor_value": 1.5}
    assert "\n  " in path.read_text()  # indent 2
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary left


# ---------------------------------------------------------------- outputs


def test_confusion_matrix_png_for_fifty_classes(tmp_path):
    confusion = np.random.default_rng(0).integers(0, 3, size=(50, 50))
    path = tmp_path / "confusion.png"
    save_confusion_matrix_png(confusion, [f"class_{i}" for i in range(50)], path)
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 500


def test_interpretation_png_is_readable(tmp_path):
    log_spec = torch.rand(431, 513)
    mask = (log_spec > 0.5).float()
    path = tmp_path / "clip.png"
    save_interpretation_png(log_spec, mask, mask * log_spec, path, "dog", "rain")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # three panels side by side


def test_save_wav_duration_and_peak_safety(tmp_path):
    loud = tmp_path / "loud.wav"
    save_wav(torch.linspace(-4, 4, 16000), loud)
    data, rate = sf.read(loud)
    assert rate == 16000 and len(data) == 16000 and sf.info(loud).subtype == "PCM_16"
    assert 0.99 < np.abs(data).max() <= 1.0
    quiet = tmp_path / "quiet.wav"
    save_wav(np.full(800, 0.25, dtype=np.float32), quiet)
    data, _ = sf.read(quiet)
    assert np.allclose(data, 0.25, atol=1e-4)  # never scaled up
    with pytest.raises(ValueError):
        save_wav(torch.tensor([0.0, float("nan")]), tmp_path / "bad.wav")


def test_save_interpretations_writes_all_files(tmp_path):
    features = LogSpectrogram()
    wavs = torch.randn(2, 80000) * 0.1
    log_spec, phase = features(wavs)
    mask = quantile_mask(upsample_map(torch.rand(2, 7, 7)), 0.9)
    folder = tmp_path / "interpretations"
    files = save_interpretations(
        folder,
        ["1-100-A-0", "5-200-B-1"],
        log_spec,
        phase,
        mask,
        mask * log_spec,
        torch.tensor([0, 1]),
        torch.tensor([1, 1]),
        ["dog", "rain"],
        features,
        length=80000,
        probabilities=torch.tensor([[0.3, 0.7], [0.4, 0.6]]),
    )
    assert len(files) == 10 and all(f.is_file() for f in files)
    info = json.loads((folder / "1-100-A-0.json").read_text())
    assert info["true_class"] == "dog" and info["predicted_class"] == "rain"
    assert info["top"] == [
        {"class": "rain", "probability": pytest.approx(0.7)},
        {"class": "dog", "probability": pytest.approx(0.3)},
    ]
    # what the mask removes is a sound of its own, not the interpretation again
    kept, _ = sf.read(folder / "5-200-B-1_interpretation.wav")
    removed, _ = sf.read(folder / "5-200-B-1_removed.wav")
    assert removed.std() > 0 and abs(np.corrcoef(kept, removed)[0, 1]) < 0.9
    for clip_id in ["1-100-A-0", "5-200-B-1"]:
        assert (folder / f"{clip_id}.png").is_file()
        for kind in ["original", "interpretation", "removed"]:
            info = sf.info(folder / f"{clip_id}_{kind}.wav")
            assert info.samplerate == 16000 and info.duration == pytest.approx(5.0)
    original, _ = sf.read(folder / "1-100-A-0_original.wav")
    assert np.corrcoef(original[1000:-1000], wavs[0, 1000:-1000].numpy())[0, 1] > 0.99


@pytest.mark.parametrize("quantile", [0.0, 0.1, 0.5, 0.9, 0.97, 1.0])
def test_fast_quantile_mask_keeps_the_same_cells_as_the_stable_sort(quantile):
    """Without ``valid`` the mask comes from a k-th value and a count of ties; with ``valid`` all
    True from the stable sort: the same cells, ties included (maps with many equal values)."""
    generator = torch.Generator().manual_seed(int(quantile * 100))
    for map in (
        torch.randint(0, 4, (3, 20, 17), generator=generator).float(),
        torch.rand(3, 20, 17, generator=generator),
        torch.zeros(2, 9, 11),
    ):
        fast = quantile_mask(map, quantile)
        by_sort = quantile_mask(map, quantile, valid=torch.ones_like(map, dtype=torch.bool))
        assert torch.equal(fast, by_sort)
        assert int(fast[0].sum()) == int(kept_cells(map[0].numel(), quantile))
