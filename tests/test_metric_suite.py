"""The faithfulness suite (AI, AD, AG, SPS, COMP) next to FID-I and FA, and the OOD protocol."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from recipe_runs import run_script

from interpreters.metrics import (
    METRIC_KEYS,
    MetricsAccumulator,
    complexity,
    interpretation_scores,
    sparseness,
)
from recipes.ood import (
    AUTHORS_DRAWS,
    authors_interferers,
    condition_waves,
    interferers,
    overlap,
    parse_condition,
    protocol_waves,
)
from recipes.report import table_rows


def _classifier_with_scores(x_scores, int_scores, out_scores):
    """A fake classifier: cosine scores by input (x, x_int, x_out told apart by a marker)."""

    def classify(log_spec):
        marker = log_spec[:, 0, 0]
        rows = []
        for value in marker.tolist():
            rows.append({1.0: x_scores, 0.75: int_scores, 0.25: out_scores}[value])
        return torch.tensor(rows)

    return classify


def test_ai_ad_ag_known_answers():
    # x: p = softmax([1, 0]) -> p_c = 0.7311 (c = 0); x_int: o = softmax([2, 0]) -> 0.8808
    log_spec = torch.ones(1, 2, 2)
    mask = torch.full((1, 2, 2), 0.75)
    classify = _classifier_with_scores([1.0, 0.0], [2.0, 0.0], [0.0, 1.0])
    out = interpretation_scores(classify, log_spec, mask, score_scale=3.0)

    def sigmoid(z):
        return 1 / (1 + math.exp(-z))

    for suffix, k in (("_unscaled", 1.0), ("", 3.0)):  # scale 1, then the run's scale
        p, o = sigmoid(k), sigmoid(2 * k)
        assert float(out[f"ai{suffix}"]) == 100.0  # p_c < o_c
        assert float(out[f"ad{suffix}"]) == 0.0
        assert float(out[f"ag{suffix}"]) == pytest.approx(100 * (o - p) / (1 - p), rel=1e-5)
    p, o, r = sigmoid(1), sigmoid(2), sigmoid(-1)
    assert float(out["fa"]) == pytest.approx(p - r, rel=1e-5)  # mask-out: p([0, 1])_0
    assert float(out["fa_mask_in"]) == pytest.approx(p - o, rel=1e-5)
    assert float(out["ff"]) == pytest.approx(sigmoid(3) - sigmoid(-3), rel=1e-5)
    assert float(out["ff_mask_in"]) == pytest.approx(sigmoid(3) - sigmoid(6), rel=1e-5)
    # The other way round: the interpretation lowers the probability.
    classify = _classifier_with_scores([2.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    out = interpretation_scores(classify, log_spec, mask, score_scale=3.0)
    for suffix, k in (("_unscaled", 1.0), ("", 3.0)):
        p, o = sigmoid(2 * k), sigmoid(k)
        assert float(out[f"ai{suffix}"]) == 0.0 and float(out[f"ag{suffix}"]) == 0.0
        assert float(out[f"ad{suffix}"]) == pytest.approx(100 * (p - o) / p, rel=1e-5)  # once


def test_ag_and_ff_at_scale_1_and_at_scale_30_on_a_toy_cosine_classifier():
    """Issue 23, point 2: the suite at scale 1 hides gains the model's real probabilities show.

    Ten classes, each weight a unit vector e_j, the feature the clip's own 10-vector, so the
    cosine scores are x_j / |x|, computed here by hand: x = (3, 2, ..., 2), the mask keeps
    class 0's cell and 0.9 of the others.
    """

    def classify(log_spec):  # a cosine classifier: normalise(features) @ normalise(weights).T
        features = torch.nn.functional.normalize(log_spec.mean(dim=1), dim=-1)
        return features @ torch.eye(10).T

    x = torch.tensor([3.0] + [2.0] * 9).reshape(1, 1, 10)
    mask = torch.tensor([1.0] + [0.9] * 9).reshape(1, 1, 10)
    out = interpretation_scores(classify, x, mask, score_scale=30.0)
    norm_x, norm_int, norm_out = math.sqrt(9 + 9 * 4), math.sqrt(9 + 9 * 1.8**2), 0.2 * 2 * 3
    cos = {  # (class 0, every other class)
        "x": (3 / norm_x, 2 / norm_x),
        "int": (3 / norm_int, 1.8 / norm_int),
        "out": (0.0, 0.4 / norm_out),
    }

    def p_c(which, k):
        own, other = cos[which]
        return 1 / (1 + 9 * math.exp(-k * (own - other)))

    expected = {}
    for suffix, k in (("_unscaled", 1.0), ("", 30.0)):
        p, o, r = p_c("x", k), p_c("int", k), p_c("out", k)
        expected[f"ag{suffix}"] = 100 * (o - p) / (1 - p)
        expected[f"ff{suffix}"] = p - r
    # By hand: AG 0.53 % at scale 1, 72.3 % at scale 30; FF 0.0405 and 0.907.
    assert expected["ag_unscaled"] == pytest.approx(0.526, abs=1e-3)
    assert expected["ag"] == pytest.approx(72.3, abs=0.1)
    assert float(out["ag_unscaled"]) == pytest.approx(expected["ag_unscaled"], rel=1e-4)
    assert float(out["ag"]) == pytest.approx(expected["ag"], rel=1e-4)
    assert float(out["fa"]) == pytest.approx(expected["ff_unscaled"], rel=1e-4)  # FF at 1 = FA
    assert float(out["ff"]) == pytest.approx(expected["ff"], rel=1e-4)
    assert float(out["ai"]) == float(out["ai_unscaled"]) == 100.0  # the gain is real at both
    assert float(out["fid_i"]) == 1.0  # the argmax: no scale


def test_ag_keeps_its_digits_when_the_probability_rounds_to_one():
    # At scale 30 a cosine gap of 0.7 gives p_c = 1 - 7.6e-10: float32 rounds it to 1, so
    # 1 - p_c computed from p_c would be 0 (AG 0 / 0); the suite uses the others' sum.
    classify = _classifier_with_scores([0.7, 0.0], [0.8, 0.0], [0.0, 0.7])
    out = interpretation_scores(
        classify, torch.ones(1, 2, 2), torch.full((1, 2, 2), 0.75), score_scale=30.0
    )
    rest_x, rest_int = math.exp(-21) / (1 + math.exp(-21)), math.exp(-24) / (1 + math.exp(-24))
    assert float(out["ag"]) == pytest.approx(100 * (rest_x - rest_int) / rest_x, rel=1e-5)
    assert float(out["ff"]) == pytest.approx(1 - 2 * rest_x, abs=1e-6)


@pytest.mark.parametrize("scale", [None, 0.0, -30.0, float("nan"), "thirty"])
def test_the_scale_is_required_and_checked(scale):
    log_spec = torch.ones(1, 2, 2)
    classify = _classifier_with_scores([1.0, 0.0], [2.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="score_scale must be a positive number"):
        interpretation_scores(classify, log_spec, torch.full((1, 2, 2), 0.75), score_scale=scale)
    with pytest.raises(TypeError, match="score_scale"):
        interpretation_scores(classify, log_spec, torch.full((1, 2, 2), 0.75))


def _quantus_sparseness(a):
    """Quantus 0.6 ``Sparseness.evaluate_instance`` (abs applied first, ``abs=True``)."""
    a = np.array(np.reshape(np.abs(a), (np.prod(a.shape),)), dtype=np.float64)
    a += 0.0000001
    a = np.sort(a)
    return (np.sum((2 * np.arange(1, a.shape[0] + 1) - a.shape[0] - 1) * a)) / (
        a.shape[0] * np.sum(a)
    )


def _quantus_complexity(a):
    """Quantus 0.6 ``Complexity``: scipy's entropy of |a| / sum |a| (natural log)."""
    a = np.abs(np.array(np.reshape(a, (np.prod(a.shape),)), dtype=np.float64)) / np.sum(np.abs(a))
    a = a[a > 0]
    return float(-(a * np.log(a)).sum())


def test_sps_and_comp_follow_quantus_on_fixed_inputs():
    generator = torch.Generator().manual_seed(3)
    masks = torch.stack(
        [
            torch.rand(6, 7, generator=generator),
            (torch.rand(6, 7, generator=generator) > 0.8).float(),
            torch.ones(6, 7),
        ]
    )
    masks[1, 0, 0] = 1.0  # not empty
    for index in range(3):
        expected_sps = _quantus_sparseness(masks[index].numpy())
        expected_comp = _quantus_complexity(masks[index].numpy())
        assert float(sparseness(masks)[index]) == pytest.approx(expected_sps, abs=1e-6)
        assert float(complexity(masks)[index]) == pytest.approx(expected_comp, abs=1e-5)
    assert float(complexity(masks)[2]) == pytest.approx(math.log(42), abs=1e-5)
    assert float(sparseness(masks)[2]) == pytest.approx(0.0, abs=1e-6)
    # A binary mask of k cells: Gini = 1 - k / n (up to the 1e-7), entropy = log k.
    k = int(masks[1].sum())
    assert float(sparseness(masks)[1]) == pytest.approx(1 - k / 42, abs=1e-5)
    assert float(complexity(masks)[1]) == pytest.approx(math.log(k), abs=1e-5)


def test_empty_masks_are_left_out_of_sps_and_comp_and_counted():
    log_spec = torch.rand(2, 3, 3)
    mask = torch.ones(2, 3, 3)
    mask[1] = 0.0
    out = interpretation_scores(lambda x: x.flatten(1)[:, :2], log_spec, mask, score_scale=30.0)
    assert math.isnan(float(out["sps"][1])) and math.isnan(float(out["comp"][1]))
    accumulator = MetricsAccumulator(2)
    accumulator.add_scores(torch.tensor([0, 1]), out)
    summary = accumulator.summary()
    assert summary["n_empty_masks"] == 1 and summary["n_clips"] == 2
    assert summary["comp"] == pytest.approx(math.log(9), abs=1e-5)  # the full mask only
    assert set(METRIC_KEYS) <= set(summary)


def test_older_callers_without_the_suite_get_none():
    accumulator = MetricsAccumulator(2)
    ones = torch.ones(2)
    accumulator.update(torch.tensor([0, 1]), torch.tensor([0, 1]), ones, ones, ones)
    summary = accumulator.summary()
    assert summary["fid_i"] == 1.0 and summary["ai"] is None and summary["n_empty_masks"] is None
    row = table_rows([{**summary, "method": "focalnet", "quantile": 0.9, "n_params": 1}])[0]
    assert row["AI"] == "-" and row["FID-I"] == "1.000"


# ------------------------------------------------------------------ OOD ---


def test_overlap_is_at_the_requested_snr():
    generator = torch.Generator().manual_seed(0)
    clean, other = torch.randn(2, 16000, generator=generator)
    for snr_db in (0.0, 6.0, 12.0):
        mixture = overlap(clean, other, snr_db)
        assert float(mixture.abs().max()) == pytest.approx(1.0)
        # undo the peak normalisation: the mixture is a * clean/|clean| + b * other/|other|
        basis = torch.stack([clean / clean.norm(), other / other.norm()], dim=1)
        a, b = torch.linalg.lstsq(basis, mixture.unsqueeze(1)).solution.flatten().tolist()
        assert 20 * math.log10(a / b) == pytest.approx(snr_db, abs=1e-3)


def test_conditions_parse_and_mixtures_use_another_class():
    assert parse_condition("mix:-3") == ("mix", -3.0)
    for bad in ("noise", "mix:loud", "reverb:3", "clean:3"):
        with pytest.raises(ValueError, match="clean, noise:SNR or mix:SNR"):
            parse_condition(bad)
    labels = [0, 0, 1, 1, 2]
    assert all(labels[j] != labels[i] for i, j in enumerate(interferers(labels)))
    waves = torch.randn(5, 100)
    assert torch.equal(condition_waves(waves, labels, "clean"), waves)
    noisy = condition_waves(waves, labels, "noise:6", seed=1)
    assert torch.equal(noisy, condition_waves(waves, labels, "noise:6", seed=1))  # seeded
    with pytest.raises(ValueError, match="two classes"):
        interferers([1, 1])


def test_the_authors_protocol_overlaps_each_clip_twice_with_interferers_of_any_class():
    generator = torch.Generator().manual_seed(2)
    waves, pool = torch.randn(5, 200, generator=generator), torch.randn(4, 200, generator=generator)
    labels = [1] * 5  # one class only: the default protocol could not mix these clips
    with pytest.raises(ValueError, match="two classes"):
        protocol_waves(waves, labels, "mix:12", "next_other_class")
    mixed, clip = protocol_waves(waves, labels, "mix:12.04", "authors", pool, seed=3)
    assert clip == [i for i in range(5) for _ in range(AUTHORS_DRAWS)] and AUTHORS_DRAWS == 2
    pairs = authors_interferers(5, 4, seed=3)
    assert all(len(set(pair)) == 2 for pair in pairs)  # two different interferers a clip
    draws = [j for pair in pairs for j in pair]
    for row, (i, j) in enumerate(zip(clip, draws, strict=True)):
        assert torch.equal(mixed[row], overlap(waves[i], pool[j], 12.04))
        # mix:12.04 is eval.py's 0.8 s + 0.2 n (unit energies), up to the peak normalisation
        authors = 0.8 * waves[i] / waves[i].norm() + 0.2 * pool[j] / pool[j].norm()
        assert torch.allclose(mixed[row], authors / authors.abs().max(), atol=1e-3)
    again, _ = protocol_waves(waves, labels, "mix:12.04", "authors", pool, seed=3)
    assert torch.equal(mixed, again)  # seeded
    noisy, clip = protocol_waves(waves, labels, "noise:6.02", "authors", pool, seed=3)
    assert noisy.shape == (10, 200) and not torch.equal(noisy[0], noisy[1])  # two noise draws
    clean, clip = protocol_waves(waves, labels, "clean", "authors", pool)
    assert torch.equal(clean, waves) and clip == list(range(5))  # each clean clip once
    with pytest.raises(ValueError, match="next_other_class, authors"):
        protocol_waves(waves, labels, "clean", "shuffled")
    with pytest.raises(ValueError, match="pool of interferers"):
        protocol_waves(waves, labels, "mix:6", "authors")


def test_ood_eval_end_to_end(classifier_runs, piq_run, tmp_path):
    folder = classifier_runs["focalnet"]
    args = [
        f"--model_folder={folder}",
        "--runs",
        str(piq_run),
        "--methods",
        "by_design",
        "random",
        "energy",
        "piq",
        "--conditions",
        "clean",
        "noise:6",
        "mix:0",
        f"--output_folder={tmp_path}",
    ]
    result = run_script("ood_eval.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "ood.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["condition"], r["method"]) for r in rows] == [
        (c, m)
        for c in ("clean", "noise:6", "mix:0")
        for m in ("by_design", "random", "energy", "piq")
    ]
    assert (tmp_path / "ood.png").stat().st_size > 10_000
    # Clean by-design row = the run's own test metrics (same clips, same q, same masks).
    own = json.loads((folder / "test_metrics.json").read_text())
    clean = next(r for r in rows if r["condition"] == "clean" and r["method"] == "by_design")
    assert own["score_scale"] == float(clean["score_scale"]) == 30.0  # hparams/focalnet.yaml
    for key in ("acc", *METRIC_KEYS):  # both scales: the recipe and the study pass the same
        assert float(clean[key]) == pytest.approx(own[key], abs=1e-5), key
    assert {r["protocol"] for r in rows} == {"next_other_class"}
    piq = json.loads((piq_run / "test_metrics.json").read_text())
    assert piq["score_scale"] == 30.0  # PIQ's: its classifier run's model.json
    # The authors' protocol: the validation clips, two test-fold interferers each.
    authors_out = tmp_path / "authors"
    args = [f"--model_folder={folder}", "--methods", "by_design", "--protocol", "authors"]
    result = run_script("ood_eval.py", [*args, f"--output_folder={authors_out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(authors_out / "ood.csv", newline="") as handle:
        authors = {r["condition"]: r for r in csv.DictReader(handle)}
    assert list(authors) == ["clean", "noise:6.02", "mix:12.04"]  # the authors' levels
    assert {r["protocol"] for r in authors.values()} == {"authors"}
    n_valid = int(authors["clean"]["n_clips"])
    assert n_valid > 0 and int(authors["mix:12.04"]["n_clips"]) == 2 * n_valid
    result = run_script("ood_eval.py", [f"--model_folder={folder}", "--conditions", "wind:3"])
    assert result.returncode != 0 and "wind:3" in result.stderr
