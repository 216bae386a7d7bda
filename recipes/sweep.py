"""The effect of the quantile order q (paper, section 4.2, Fig. 3): one pass over the test fold.

For each batch the unmasked input goes through the classifier once (scores and every method's
map, ``interpreters.methods.method_maps``); each same-area method and q then costs one batched
forward of its interpretation and masked-out input; a soft mask (PIQ, L-MAC) is scored once.
Every q is scored by ``interpreters.metrics``, exactly as the classifier recipe scores its
single q: ``fid_i``, ``fa``, ``fa_mask_in`` and ``*_unscaled`` at scale 1, ``ai``, ``ad``, ``ag``,
``ff``, ``ff_mask_in`` at the classifier's ``score_scale`` (a column; the run's ``model.json``).
Each row also says whether the masks hug the clips' edges: ``mask_first`` /
``mask_last``, the mean share of the mask in the first / last 0.25 s, and ``edge_area``, those
frames' share of a clip (``interpreters.localisation.edge_shares``).

Example
-------
>>> default_quantiles()[:3], len(default_quantiles())
([0.05, 0.1, 0.15], 19)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from data_prep.atomic import atomic_path
from interpreters.localisation import edge_frames, edge_shares
from interpreters.maps import quantile_mask
from interpreters.methods import METHODS, method_maps
from interpreters.metrics import (
    MASK_KEYS,
    PAPER_KEYS,
    SCALED_KEYS,
    UNSCALED_KEYS,
    MetricsAccumulator,
    interpretation_scores,
)

SWEEP_COLUMNS = (
    "q",
    *PAPER_KEYS,
    *SCALED_KEYS,
    *UNSCALED_KEYS,
    *MASK_KEYS,
    "score_scale",
    "acc",
    "n_clips",
    "mask_first",
    "mask_last",
    "edge_area",
)
EDGE_SECONDS = 0.25


def default_quantiles() -> list[float]:
    """0.05, 0.10, ..., 0.95."""
    return [round(0.05 * step, 2) for step in range(1, 20)]


def check_quantiles(quantiles: Iterable) -> list[float]:
    """The quantile orders as sorted floats; ValueError naming a value outside [0, 1)."""
    values = sorted({float(q) for q in quantiles})
    bad = [q for q in values if not 0 <= q < 1]
    if not values or bad:
        raise ValueError(f"quantiles must be a non-empty list of values in [0, 1); got {bad}")
    return values


@torch.no_grad()
def sweep_quantiles(
    model,
    batches: Iterable,
    quantiles: Sequence[float],
    methods=("by_design",),
    trained=None,
    seed=0,
) -> list:
    """Scores every method's masks: same-area methods at every q of ``quantiles``, soft masks
    once (their row's ``q`` is None).

    Arguments
    ---------
    model : recipes.loading.LoadedModel
        The classifier (``classifier``, ``features``, ``class_names``, ``device``, and
        ``score_scale``, the scale of the scaled suite).
    batches : iterable
        SpeechBrain ``PaddedBatch`` objects with ``signal`` and ``label``.
    quantiles : sequence of float
        The q values.
    methods : sequence of str
        Registry names (``interpreters.methods``).
    trained : dict, optional
        Trained methods' modules by name.
    seed : int
        Seed of the random baseline.

    Returns
    -------
    list of dict
        One row per method and q: ``method`` and the keys of ``SWEEP_COLUMNS``.
    """
    quantiles = check_quantiles(quantiles)
    n_classes = len(model.class_names)
    keys = [
        (method, q)
        for method in methods
        for q in (quantiles if METHODS[method].mask == "hard" else [None])
    ]
    accumulators = {key: MetricsAccumulator(n_classes, device=model.device) for key in keys}
    edge_sums = {key: torch.zeros(2, dtype=torch.float64) for key in keys}
    edges = None
    generator = torch.Generator().manual_seed(seed)
    for batch in batches:
        wavs = batch.signal.data.to(model.device)
        labels = batch.label.to(model.device)
        log_spec, _ = model.features(wavs, with_phase=False)
        if edges is None:
            edges = edge_frames(
                log_spec.shape[1], model.hop_samples(), model.sample_rate, EDGE_SECONDS
            )
        scores, maps = method_maps(model.classifier, log_spec, methods, trained, generator)
        for (method, q), accumulator in accumulators.items():
            mask = maps[method] if q is None else quantile_mask(maps[method], q)
            result = interpretation_scores(
                model.classify, log_spec, mask, scores=scores, score_scale=model.score_scale
            )
            accumulator.add_scores(labels, result)
            shares = edge_shares(mask, *edges)
            edge_sums[(method, q)] += torch.stack(
                [shares["first"].sum().cpu(), shares["last"].sum().cpu()]
            ).double()
    rows = []
    n_frames = edges[1].stop if edges is not None else 0
    edge_area = (edges[0].stop + edges[1].stop - edges[1].start) / n_frames if n_frames else None
    for (method, q), accumulator in accumulators.items():
        summary = accumulator.summary(quantile=q)
        n_clips = max(summary["n_clips"], 1)
        first, last = (edge_sums[(method, q)] / n_clips).tolist()
        summary.update(mask_first=first, mask_last=last, edge_area=edge_area)
        summary["score_scale"] = model.score_scale  # of ai, ad, ag, ff, ff_mask_in
        rows.append({"method": method, "q": q, **{k: summary[k] for k in SWEEP_COLUMNS[1:]}})
    return rows


def write_sweep_csv(rows: Sequence[dict], path, extra_columns: Sequence[str] = ()) -> Path:
    """Writes sweep rows as CSV (atomically); ``extra_columns`` come first (e.g. ``method``)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*extra_columns, *SWEEP_COLUMNS])
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in writer.fieldnames})
    return path


def read_sweep_csv(path) -> list[dict]:
    """Rows of a sweep CSV with numbers as floats (None for an empty cell)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in SWEEP_COLUMNS:
            row[key] = float(row[key]) if row.get(key) not in (None, "", "None") else None
    return rows
