"""Table 1 of the paper from the ``test_metrics.json`` of any set of runs.

Columns: Method, ACC, FID-I, FA, FA_mask_in (the paper's, probabilities at scale 1), then the
L-MAC paper's suite at each run's ``score_scale`` (the model's real probabilities): AI, AD, AG (in
%), FF, FF_mask_in; the same AI, AD, AG at scale 1 (AI_unscaled, AD_unscaled, AG_unscaled), SPS,
COMP (``interpreters.metrics``), Scale (the ``score_scale`` of the scaled columns), and #Params. A
run written before the suite had two scales shows its AI, AD, AG (then at scale 1) under the
``_unscaled`` columns and "-" under the scaled ones, as for any metric it lacks. As in the paper,
a PIQ (or L-MAC) row counts the parameters of the classifier and of its interpreter (FocalNet-PIQ:
87.3M + 71.4M = 158.7M), and the by-design rows name their quantile q when it is not the paper's
0.9.

Example
-------
>>> rows = table_rows([
...     {"backbone": "focalnet", "method": "by_design", "acc": 0.774, "fid_i": 0.305,
...      "fa": 0.0111, "fa_mask_in": 0.02, "n_params": 87_331_592, "quantile": 0.9},
...     {"backbone": "focalnet", "method": "piq", "acc": 0.774, "fid_i": 0.278, "fa": 0.0111,
...      "fa_mask_in": 0.01, "n_params": 71_405_569, "classifier_n_params": 87_331_592,
...      "quantile": None},
... ])
>>> [(row["Method"], row["#Params"]) for row in rows]
[('FocalNet', '87.3M'), ('FocalNet-PIQ', '158.7M')]
>>> print(markdown_table(rows).splitlines()[2])
| FocalNet | 0.774 | 0.305 | 0.0111 | 0.0200 | - | - | - | - | - | - | - | - | - | - | - | 87.3M |
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from data_prep.atomic import atomic_path
from interpreters.methods import METHODS
from recipes.backbones import BACKBONES

# column -> (metrics key, format); FA, FA_mask_in and *_unscaled at scale 1, AI ... FF_mask_in
# at the run's score_scale (the Scale column)
METRIC_COLUMNS = {
    "ACC": ("acc", ".3f"),
    "FID-I": ("fid_i", ".3f"),
    "FA": ("fa", ".4f"),
    "FA_mask_in": ("fa_mask_in", ".4f"),
    "AI": ("ai", ".1f"),
    "AD": ("ad", ".2f"),
    "AG": ("ag", ".2f"),
    "FF": ("ff", ".4f"),
    "FF_mask_in": ("ff_mask_in", ".4f"),
    "AI_unscaled": ("ai_unscaled", ".1f"),
    "AD_unscaled": ("ad_unscaled", ".2f"),
    "AG_unscaled": ("ag_unscaled", ".2f"),
    "SPS": ("sps", ".3f"),
    "COMP": ("comp", ".2f"),
    "Scale": ("score_scale", "g"),
}
COLUMNS = ("Method", *METRIC_COLUMNS, "#Params")
PAPER_QUANTILE = 0.9


def method_label(metrics: dict) -> str:
    """A run's row label: its backbone's, and its method's when it is not the by-design one
    (FocalNet, ViT, FocalNet-PIQ, ViT-L-MAC, ...; with ``q=...`` when not 0.9).

    Example
    -------
    >>> method_label({"backbone": "vit", "method": "lmac"})
    'ViT-L-MAC'
    >>> method_label({"backbone": "focalnet", "method": "by_design", "quantile": 0.8})
    'FocalNet (q=0.8)'
    """
    backbone = metrics.get("backbone", "?")
    label = BACKBONES[backbone].label if backbone in BACKBONES else backbone
    method = metrics.get("method", "by_design")
    if method != "by_design":
        return f"{label}-{METHODS[method].label if method in METHODS else method}"
    q = metrics.get("quantile")
    if q is not None and abs(q - PAPER_QUANTILE) > 1e-9:
        label += f" (q={q:g})"
    return label


def table_rows(all_metrics: list[dict]) -> list[dict]:
    """One row of formatted values per run's metrics (see the module docstring)."""
    rows = []
    for metrics in all_metrics:
        n_params = (metrics.get("n_params") or 0) + (metrics.get("classifier_n_params") or 0)
        rows.append(
            {
                "Method": method_label(metrics),
                **metric_cells(metrics),
                "#Params": f"{n_params / 1e6:.1f}M",
            }
        )
    return rows


def metric_cells(metrics: dict) -> dict:
    """The formatted metric columns of one run or sweep row ("-" where a value is missing).

    Example
    -------
    >>> cells = metric_cells({"acc": "0.5", "fid_i": 1.0, "ai": 12.5, "score_scale": 30.0})
    >>> cells["AI"], cells["AI_unscaled"], cells["Scale"]
    ('12.5', '-', '30')
    """
    cells = {}
    for column, (key, spec) in METRIC_COLUMNS.items():
        value = metrics.get(key)
        cells[column] = "-" if value in (None, "") else format(float(value), spec)
    return cells


def markdown_table(rows: list[dict], columns: Sequence[str] = COLUMNS) -> str:
    """The rows (dicts of cell strings) as a Markdown table of ``columns`` (default: Table 1)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row[column] for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def read_run_metrics(folder) -> dict:
    """The ``test_metrics.json`` of a run folder (RunFolderError naming it when absent)."""
    from recipes.runs import RunFolderError  # runs -> training -> report_page -> this module

    path = Path(folder) / "test_metrics.json"
    if not path.is_file():
        raise RunFolderError(
            f"{path} does not exist: {folder} is not a finished train_classifier.py, "
            "train_piq.py, train_lmac.py or train_l2i.py run"
        )
    return json.loads(path.read_text())


def write_table(rows: list[dict], markdown_path, csv_path) -> None:
    """Writes the Markdown and CSV tables (each atomically)."""
    for path, write in ((markdown_path, _write_markdown), (csv_path, _write_csv)):
        with atomic_path(path) as tmp:
            write(rows, tmp)


def _write_markdown(rows, path):
    Path(path).write_text(markdown_table(rows))


def _write_csv(rows, path):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def baseline_rows(sweep_csv, quantile: float = PAPER_QUANTILE) -> list[dict]:
    """Table rows of the baseline masks in a ``sweep_quantile.py`` CSV, at ``quantile``.

    Baselines add no parameters, so their ``#Params`` is "-" (their classifier's row has it).
    """
    rows = []
    with open(sweep_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if " " not in row["method"] or row["q"] in ("", "None"):
                continue  # by-design rows and soft masks come from the runs themselves
            if abs(float(row["q"]) - quantile) > 1e-9:
                continue
            q = float(row["q"])
            suffix = "" if abs(q - PAPER_QUANTILE) < 1e-9 else f" (q={q:g})"
            rows.append({"Method": row["method"] + suffix, **metric_cells(row), "#Params": "-"})
    if not rows:
        from recipes.runs import RunFolderError

        raise RunFolderError(
            f"{sweep_csv} has no baseline rows at q={quantile}: run sweep_quantile.py with "
            "--methods naming same-area methods other than by_design and a --quantiles list "
            "that holds this q"
        )
    return rows
