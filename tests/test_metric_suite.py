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
from recipes.ood import condition_waves, interferers, overlap, parse_condition
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
    out = interpretation_scores(classify, log_spec, mask)
    p, o = 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-2))
    assert float(out["ai"]) == 100.0  # p_c < o_c
    assert float(out["ad"]) == 0.0
    assert float(out["ag"]) == pytest.approx(100 * (o - p) / (1 - p), rel=1e-5)
    assert float(out["fa"]) == pytest.approx(p - (1 - p), rel=1e-5)  # mask-out: p([0, 1])_0
    # The other way round: the interpretation lowers the probability.
    classify = _classifier_with_scores([2.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    out = interpretation_scores(classify, log_spec, mask)
    assert float(out["ai"]) == 0.0 and float(out["ag"]) == 0.0
    assert float(out["ad"]) == pytest.approx(100 * (o - p) / o, rel=1e-5)  # softmax once


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
    out = interpretation_scores(lambda x: x.flatten(1)[:, :2], log_spec, mask)
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
    for key in ("acc", "fid_i", "fa", "fa_mask_in", "ai", "ad", "ag", "sps", "comp"):
        assert float(clean[key]) == pytest.approx(own[key], abs=1e-5), key
    result = run_script("ood_eval.py", [f"--model_folder={folder}", "--conditions", "wind:3"])
    assert result.returncode != 0 and "wind:3" in result.stderr
