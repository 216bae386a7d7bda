"""The listening test's analysis (``listen.py --analyse DB``): what the ears said, and whether
the metrics agree.

Only finished MUSHRA trials count (an open trial's ratings may still change). Steps:

1. **Post-screening** (ITU-R BS.1534-3, 4.1.2): a participant who rates the hidden reference
   below ``REFERENCE_MIN`` (90) in more than ``MAX_REFERENCE_MISSES`` (15 %) of their trials is
   excluded; excluded participants are listed with their share of such trials.
2. **Per condition** (each method, the anchor, the hidden reference): n, mean, standard
   deviation and the 95 % confidence interval of the mean (Student's t, ``scipy.stats.t``).
3. **Tests** over the kept participants' complete trials (blocks), the methods and the anchor
   (the hidden reference, a screening device, is left out): Friedman's test
   (``scipy.stats.friedmanchisquare``) and every pair's Wilcoxon signed-rank test
   (``scipy.stats.wilcoxon``, two-sided) with Holm's step-down correction (``holm``).
4. **Metrics against ears**: per (clip, condition) the mean rating of the kept participants,
   and that clip's objective metrics for the same mask (``test.json``: FID-I, FA, FA_mask_in,
   AI, AD, AG, FF, FF_mask_in, SPS, COMP); Spearman's rho (``scipy.stats.spearmanr``) over
   all (clip, condition) points, per metric; a metric constant over the points (SPS and COMP
   are fixed by q at equal area) has no correlation (null, said so).
5. **A/B** (when the test has it): per pair, how often each was preferred, and a two-sided
   binomial test against 50 % (``scipy.stats.binomtest``).

Writes ``analysis.json`` (everything), ``conditions.csv``, ``pairwise.csv``,
``correlations.csv`` and ``ratings_boxplot.png`` together (``recipes.outputs.written_together``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from recipes.listening.db import HIDDEN_REFERENCE, ListeningDB
from recipes.outputs import save_ratings_boxplot, write_csv_rows, written_together

REFERENCE_MIN = 90.0
MAX_REFERENCE_MISSES = 0.15


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given), capped at 1.

    Example
    -------
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = [float(value) for value in p_values]
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = round(running, 12)
    return adjusted


def mean_ci(values, level=0.95) -> dict:
    """n, mean, standard deviation and the Student-t confidence interval of the mean.

    Example
    -------
    >>> row = mean_ci([1.0, 2.0, 3.0])
    >>> row["mean"], row["sd"], round(row["ci_low"], 4), round(row["ci_high"], 4)
    (2.0, 1.0, -0.4841, 4.4841)
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    sd = float(values.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def finished_ratings(db: ListeningDB) -> list[tuple]:
    """``(participant, clip, condition, rating)`` of every finished MUSHRA trial."""
    return db.query(
        "SELECT r.participant, t.clip, r.condition, r.rating FROM ratings r "
        "JOIN trials t USING (participant, position) "
        "WHERE t.kind = 'mushra' AND t.finished IS NOT NULL "
        "ORDER BY r.participant, t.clip, r.condition"
    )


def condition_means(db: ListeningDB) -> list[dict]:
    """Mean rating per condition over finished trials, no screening (the results page)."""
    values = defaultdict(list)
    for _, _, condition, rating in finished_ratings(db):
        values[condition].append(rating)
    return [
        {"condition": name, "n": len(values[name]), "mean": float(np.mean(values[name]))}
        for name in conditions_of(db.test)
        if values[name]
    ]


def conditions_of(test: dict) -> list[str]:
    """The test's conditions in report order: methods, the anchor, the hidden reference."""
    return [*test["methods"], test["anchor"], HIDDEN_REFERENCE]


def screen(trials: dict) -> tuple[list[str], list[dict]]:
    """``(kept, excluded)`` participants from ``{participant: {clip: {condition: rating}}}``
    (see the module docstring, step 1).

    Example
    -------
    >>> trials = {"p": {c: {HIDDEN_REFERENCE: 100} for c in "abcdef"},
    ...           "q": {c: {HIDDEN_REFERENCE: 50 if c == "a" else 95} for c in "abcdef"}}
    >>> kept, excluded = screen(trials)
    >>> kept, excluded[0]["participant"], round(excluded[0]["share_below"], 3)
    (['p'], 'q', 0.167)
    >>> screen({"r": {c: {HIDDEN_REFERENCE: 50 if c == "a" else 95} for c in "abcdefg"}})[0]
    ['r']
    """
    kept, excluded = [], []
    for participant, clips in sorted(trials.items()):
        misses = sum(
            ratings.get(HIDDEN_REFERENCE, 0.0) < REFERENCE_MIN for ratings in clips.values()
        )
        share = misses / len(clips)
        if share > MAX_REFERENCE_MISSES + 1e-12:
            excluded.append(
                {
                    "participant": participant,
                    "trials": len(clips),
                    "trials_below": misses,
                    "share_below": share,
                }
            )
        else:
            kept.append(participant)
    return kept, excluded


def analyse(db_path, output_folder=None) -> dict:
    """Runs the analysis of the database ``db_path``; writes its files into ``output_folder``
    (default: ``<db folder>/analysis``) and returns ``analysis.json``'s content."""
    db = ListeningDB(db_path)
    test = db.test
    output_folder = Path(output_folder or Path(db_path).parent / "analysis")
    trials = defaultdict(lambda: defaultdict(dict))
    for participant, clip, condition, rating in finished_ratings(db):
        trials[participant][clip][condition] = rating
    kept, excluded = screen(trials)
    conditions = conditions_of(test)
    compared = conditions[:-1]
    per_condition = []
    for name in conditions:
        values = [trials[p][c][name] for p in kept for c in trials[p] if name in trials[p][c]]
        per_condition.append({"condition": name, **mean_ci(values)})
    blocks = [
        [trials[p][c][name] for name in compared]
        for p in kept
        for c in sorted(trials[p])
        if all(name in trials[p][c] for name in compared)
    ]
    matrix = np.asarray(blocks, dtype=float).reshape(len(blocks), len(compared))
    friedman = {"n_blocks": len(blocks), "conditions": compared}
    if len(compared) >= 3 and len(blocks) >= 2:
        result = stats.friedmanchisquare(*matrix.T)
        friedman.update(statistic=float(result.statistic), p_value=float(result.pvalue))
    else:
        friedman.update(statistic=None, p_value=None, note="needs >= 3 conditions, >= 2 blocks")
    pairwise = []
    for i, j in itertools.combinations(range(len(compared)), 2):
        difference = matrix[:, i] - matrix[:, j]
        row = {"a": compared[i], "b": compared[j], "n": len(difference), "note": None}
        if len(difference) and np.any(difference != 0):
            result = stats.wilcoxon(matrix[:, i], matrix[:, j])
            row.update(statistic=float(result.statistic), p_value=float(result.pvalue))
        else:
            row.update(statistic=None, p_value=1.0, note="no non-zero difference")
        row["median_difference"] = float(np.median(difference)) if len(difference) else None
        pairwise.append(row)
    for row, adjusted in zip(pairwise, holm([r["p_value"] for r in pairwise]), strict=True):
        row["p_holm"] = adjusted
    correlations = metric_correlations(test, trials, kept, compared)
    preferences = ab_preferences(db, kept)
    summary = {
        "database": str(db_path),
        "test": test.get("name"),
        "quantile": test.get("quantile"),
        "question": test.get("question"),
        "participants": sorted(trials),
        "scripted_participants": [p for p in db.scripted() if p in trials],
        "kept": kept,
        "excluded": excluded,
        "screening": {
            "rule": f"hidden reference rated below {REFERENCE_MIN:g} in more than "
            f"{100 * MAX_REFERENCE_MISSES:g} % of a participant's finished trials",
        },
        "conditions": per_condition,
        "friedman": friedman,
        "pairwise_wilcoxon_holm": pairwise,
        "metric_correlations": correlations,
        "ab_preferences": preferences,
    }
    with written_together(output_folder) as staging:
        (staging / "analysis.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_csv_rows(per_condition, staging / "conditions.csv")
        if pairwise:
            write_csv_rows(pairwise, staging / "pairwise.csv")
        if correlations:
            write_csv_rows(correlations, staging / "correlations.csv")
        save_boxplot(
            trials,
            kept,
            conditions,
            staging / "ratings_boxplot.png",
            len(excluded),
            scripted=bool(summary["scripted_participants"]),
        )
    summary["outputs"] = {
        name: str(output_folder / name)
        for name in ("analysis.json", "conditions.csv", "pairwise.csv", "ratings_boxplot.png")
    }
    return summary


def metric_correlations(test, trials, kept, compared) -> list[dict]:
    """Spearman's rho between the mean rating and each metric over (clip, condition) points."""
    points = []
    for clip in test["clips"]:
        for name in compared:
            ratings = [trials[p][clip["id"]][name] for p in kept if name in trials[p][clip["id"]]]
            if ratings and name in clip.get("metrics", {}):
                points.append((float(np.mean(ratings)), clip["metrics"][name]))
    if not points:
        return []
    rows = []
    for key in points[0][1]:
        means = np.array([mean for mean, _ in points])
        values = np.array([metrics[key] for _, metrics in points], dtype=float)
        row = {"metric": key, "n_points": len(points), "note": None}
        if _constant(values) or _constant(means):
            row.update(spearman_rho=None, p_value=None, note="constant over the points")
        else:
            result = stats.spearmanr(means, values)
            row.update(spearman_rho=float(result.statistic), p_value=float(result.pvalue))
        rows.append(row)
    return rows


def _constant(values: np.ndarray) -> bool:
    """True when ``values`` vary by no more than float32 rounding (SPS at equal area varies in
    its 7th digit)."""
    return bool(np.ptp(values) <= 1e-5 * max(1.0, float(np.abs(values).max())))


def ab_preferences(db: ListeningDB, kept) -> list[dict]:
    """Per A/B pair: the kept participants' choices and a binomial test against 50 %."""
    if not db.test.get("ab"):
        return []
    first, second = db.test["ab"]
    rows = db.query(
        "SELECT p.participant, p.choice FROM preferences p JOIN trials t USING "
        "(participant, position) WHERE t.finished IS NOT NULL"
    )
    choices = [choice for participant, choice in rows if participant in set(kept)]
    n_first = sum(choice == first for choice in choices)
    result = {"a": first, "b": second, "n": len(choices), "a_preferred": n_first}
    if choices:
        result["p_value"] = float(stats.binomtest(n_first, len(choices), 0.5).pvalue)
    return [result]


def save_boxplot(trials, kept, conditions, path, n_excluded, scripted=False) -> None:
    """Box plot of the kept participants' ratings per condition."""
    from interpreters.methods import method_label

    data = [
        [trials[p][c][name] for p in kept for c in trials[p] if name in trials[p][c]]
        for name in conditions
    ]
    labels = [
        "hidden ref." if name == HIDDEN_REFERENCE else method_label(name) for name in conditions
    ]
    title = f"MUSHRA ratings: {len(kept)} participant(s) kept, {n_excluded} excluded by screening"
    if scripted:
        title += "\nincludes SCRIPTED participants: not human results"
    save_ratings_boxplot(data, labels, path, title)
