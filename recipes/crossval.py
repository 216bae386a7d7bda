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
"""

from __future__ import annotations

import statistics

ESC50_FOLDS = (1, 2, 3, 4, 5)
METRICS = ("acc", "fid_i", "fa", "fa_mask_in")


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
    """Mean and sample standard deviation of each metric per method over the runs."""
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        picked = [row for row in rows if row["method"] == method]
        entry = {"method": method, "n_runs": len(picked)}
        for metric in METRICS:
            values = [float(row[metric]) for row in picked]
            entry[f"{metric}_mean"] = statistics.fmean(values)
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary
