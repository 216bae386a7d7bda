"""ESC-50's standard protocol: 5-fold cross-validation (and several seeds), aggregated.

The paper and the upstream recipe use one split (train 1-3, valid 4, test 5). Here each fold in
turn is the test fold, the fold before it (cyclically) validates, the other three train; or, with
``validate=False`` (ESC-10's standard protocol: train on four folds, test on the fifth), the
other four train, there is no validation, and the last epoch's model is tested.

Example
-------
>>> fold_split(5), fold_split(1)
(([1, 2, 3], [4], [5]), ([2, 3, 4], [5], [1]))
>>> fold_split(2, validate=False)
([1, 3, 4, 5], [], [2])
>>> rows = [{"method": "focalnet", "acc": a, "fid_i": 0.5, "fa": 0.01, "fa_mask_in": 0.02}
...         for a in (0.7, 0.9)]
>>> summary = aggregate(rows)[0]
>>> summary["n_runs"], round(summary["acc_mean"], 3), round(summary["acc_std"], 4)
(2, 0.8, 0.1414)
>>> print(summary_markdown([summary]).splitlines()[2])
| focalnet | 2 | 0.800 +- 0.141 | 0.500 +- 0.000 | 0.0100 +- 0.0000 | 0.0200 +- 0.0000 |
"""

from __future__ import annotations

import statistics
from pathlib import Path

from interpreters.metrics import MASK_KEYS, PAPER_KEYS, SCALED_KEYS, UNSCALED_KEYS

ESC50_FOLDS = (1, 2, 3, 4, 5)
# every column of the interpretation suite (``recipes.sweep.SWEEP_COLUMNS``): the paper's FID-I / FA
# at scale 1, L-MAC's suite at the run's score_scale and at scale 1, SPS / COMP of the masks
METRICS = ("acc", *PAPER_KEYS, *SCALED_KEYS, *UNSCALED_KEYS, *MASK_KEYS)


# (column heading, metric key, decimals) of the two tables of ``summary_markdown``
SCALED_TABLE = (
    ("ACC", "acc", 3),
    ("FID-I", "fid_i", 3),
    ("FA", "fa", 4),
    ("FA_mask_in", "fa_mask_in", 4),
    ("AI (%)", "ai", 1),
    ("AD (%)", "ad", 1),
    ("AG (%)", "ag", 2),
    ("FF", "ff", 3),
    ("FF_mask_in", "ff_mask_in", 3),
)
UNSCALED_TABLE = (
    ("AI (%), scale 1", "ai_unscaled", 2),
    ("AD (%), scale 1", "ad_unscaled", 2),
    ("AG (%), scale 1", "ag_unscaled", 3),
    ("SPS", "sps", 3),
    ("COMP", "comp", 2),
)


def fold_split(test_fold: int, folds=ESC50_FOLDS, validate: bool = True) -> tuple[list, list, list]:
    """(train, valid, test) folds when ``test_fold`` is tested (valid is [] if not validate)."""
    folds = list(folds)
    if test_fold not in folds:
        raise ValueError(f"test fold {test_fold} is not one of {folds}")
    if not validate:
        return [fold for fold in folds if fold != test_fold], [], [test_fold]
    valid = folds[folds.index(test_fold) - 1]
    train = [fold for fold in folds if fold not in (test_fold, valid)]
    return train, [valid], [test_fold]


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation of each metric per method over the runs (a metric a
    row does not hold, None or absent, is left out of its mean; None when no row holds it)."""
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        picked = [row for row in rows if row["method"] == method]
        entry = {"method": method, "n_runs": len(picked)}
        for metric in METRICS:
            values = [float(row[metric]) for row in picked if _given(row.get(metric))]
            entry[f"{metric}_mean"] = statistics.fmean(values) if values else None
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def _given(value) -> bool:
    return value not in (None, "", "None")


SCORES_FILE = "cv_scores.csv"


def score_run(run, methods=None, runs=(), data_folder=None, batch_size=16, device="cpu"):
    """The interpretation suite of ``methods`` on a classifier run's test fold, at its q.

    ``run`` is a ``train_classifier.py`` folder and ``runs`` its trained methods' folders
    (``recipes.loading.resolve_methods``: the same ``--methods`` / ``--runs`` as every study).
    Scored exactly as ``sweep_quantile.py`` scores one q (``recipes.sweep.sweep_quantiles``).
    The rows are kept in ``<run>/cv_scores.csv``: a method already scored there is read back, so
    a resumed cross-validation scores only what it has not.

    Returns
    -------
    list of dict
        One row per method: ``method``, ``q`` (None for a soft mask) and ``METRICS``.
    """
    import speechbrain as sb

    from recipes.loading import resolve_methods
    from recipes.runs import run_split_dataset
    from recipes.sweep import read_sweep_csv, sweep_quantiles, write_sweep_csv

    path = Path(run) / SCORES_FILE
    kept = {row["method"]: row for row in read_sweep_csv(path)} if path.is_file() else {}
    model, trained, methods = resolve_methods(run, methods, runs, device)
    missing = [name for name in methods if name not in kept]
    if missing:
        print(f"{run}: scoring {', '.join(missing)} on the test fold", flush=True)
        dataset = run_split_dataset(run, "test", data_folder)
        loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=batch_size)
        for row in sweep_quantiles(model, loader, [model.quantile], missing, trained):
            kept[row["method"]] = row
        write_sweep_csv(list(kept.values()), path, extra_columns=["method"])
    return [kept[name] for name in methods]


def summary_markdown(summary: list[dict]) -> str:
    """``aggregate``'s rows as two Markdown tables of ``mean +- std`` (sample std over the runs).

    The first holds ACC, the paper's FID-I / FA / FA_mask_in and the L-MAC suite at the run's
    ``score_scale``; the second the suite at scale 1 and the masks' SPS / COMP. A metric that no
    run holds is left out of its table (a column every row lacks) or shown as ``-``.
    """

    from recipes.report import markdown_table

    def cell(entry, key, decimals):
        mean, std = entry.get(f"{key}_mean"), entry.get(f"{key}_std")
        return "-" if mean is None else f"{mean:.{decimals}f} +- {std:.{decimals}f}"

    tables = []
    for columns in (SCALED_TABLE, UNSCALED_TABLE):
        held = [c for c in columns if any(e.get(f"{c[1]}_mean") is not None for e in summary)]
        if not held:
            continue
        rows = [
            {
                "method": entry["method"],
                "runs": str(entry["n_runs"]),
                **{heading: cell(entry, key, decimals) for heading, key, decimals in held},
            }
            for entry in summary
        ]
        tables.append(markdown_table(rows, ["method", "runs", *(c[0] for c in held)]))
    return "\n".join(tables)
