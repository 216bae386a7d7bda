"""Studies of a run's interpretations beyond the paper's metrics.

Localisation (``localisation_rows``): each mixture sums two test clips of different classes.
The source the prediction names is the one of the two classes with the higher score; its
region is the ground truth, exact for the synthetic set (``data_prep.synthetic``, rendered at
the model's rate), else from the separate sources' energy. Every method's mask (same-area ones
at q, soft ones as they are; ``interpreters.methods``) is scored with
``interpreters.localisation.localisation_scores``.

Deletion / insertion (``deletion_rows``): curves and areas of each method's ranking
(``interpreters.deletion``).

Randomisation sanity check (``sanity_rows``): the maps of the trained model against those of
copies with the head, or the head and the last stage, re-initialised (``interpreters.sanity``).

Each takes a ``recipes.loading.LoadedModel``, a list of registry names (``methods``) and the
trained methods' modules (``trained``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from data_prep.audio import load_clip
from data_prep.synthetic import load_specs, render_mixture
from interpreters.deletion import deletion_insertion
from interpreters.localisation import energy_regions, localisation_scores
from interpreters.methods import method_maps, method_masks
from interpreters.sanity import LEVELS, randomised_copy, spearman
from recipes.inference import mixture_pairs
from recipes.runs import run_split_dataset


def _sources(pair, specs, model):
    """Mixture waveform [samples] and the two sources' regions [T, F] (bool)."""
    names = [Path(item["path"]).name for item in pair]
    features, device = model.features, model.device
    if specs is not None and all(name in specs for name in names):
        wave, regions = render_mixture([specs[name] for name in names], model.sample_rate)
        wave = torch.from_numpy(wave)
        regions = [torch.from_numpy(np.asarray(region)) for region in regions]
    else:
        clips = [load_clip(item["path"]) for item in pair]
        wave = clips[0] + clips[1]
        log_specs = features(torch.stack(clips).to(device), with_phase=False)[0].cpu()
        regions = list(energy_regions(log_specs[0], log_specs[1]))
    peak = wave.abs().max()
    return (wave / peak if peak > 0 else wave), regions


@torch.no_grad()
def localisation_rows(
    model,
    run_folder,
    n_mixtures=20,
    quantile=None,
    methods=("by_design",),
    trained=None,
    data_folder=None,
    seed=0,
) -> list[dict]:
    """One row per mixture and method (see the module docstring)."""
    q = model.quantile if quantile is None else quantile
    dataset = run_split_dataset(run_folder, "test", data_folder)
    with dataset.output_keys_as(["id", "class_name", "path"]):
        items = list(dataset)
    folder = Path(items[0]["path"]).parents[1] if items else None
    try:
        specs = load_specs(folder)
    except FileNotFoundError:
        specs = None
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for pair in mixture_pairs(items, n_mixtures):
        wave, regions = _sources(pair, specs, model)
        log_spec, _ = model.features(wave.unsqueeze(0).to(model.device), with_phase=False)
        scores, masks = method_masks(model.classifier, log_spec, methods, q, trained, generator)
        classes = [model.class_names.index(item["class_name"]) for item in pair]
        scored = int(scores[0, classes[1]] > scores[0, classes[0]])
        region = regions[scored].unsqueeze(0).to(model.device)
        top1 = model.class_names[int(scores[0].argmax())]
        for method, mask in masks.items():
            result = localisation_scores(mask, region)
            rows.append(
                {
                    "mixture": f"{pair[0]['id']}+{pair[1]['id']}",
                    "method": method,
                    "predicted": top1,
                    "scored_source": pair[scored]["class_name"],
                    "top1_is_a_source": top1 in (pair[0]["class_name"], pair[1]["class_name"]),
                    "share_in_region": float(result["share_in_region"][0]),
                    "iou": float(result["iou"][0]),
                    "region_area": float(region.float().mean()),
                }
            )
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean share-in-region and IoU per method; ``region_area`` is what a random mask's share
    would be on average (the chance level)."""
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        picked = [row for row in rows if row["method"] == method]
        summary.append(
            {
                "method": method,
                "n_mixtures": len(picked),
                "share_in_region": float(np.mean([row["share_in_region"] for row in picked])),
                "iou": float(np.mean([row["iou"] for row in picked])),
                "chance_share": float(np.mean([row["region_area"] for row in picked])),
            }
        )
    return summary


BARELY_CHANGES = 0.9  # a mean rank correlation above this flags a method


def _test_waves(model, run_folder, n_clips, data_folder):
    dataset = run_split_dataset(run_folder, "test", data_folder)
    with dataset.output_keys_as(["signal"]):
        return [item["signal"] for _, item in zip(range(n_clips), dataset, strict=False)]


@torch.no_grad()
def sanity_rows(
    model,
    run_folder,
    n_clips=16,
    methods=("by_design",),
    trained=None,
    data_folder=None,
    seed=0,
) -> list[dict]:
    """Mean and spread of the per-clip Spearman correlation, per method and randomisation.

    The random baseline draws the same noise for the trained and the randomised model.
    """
    waves = _test_waves(model, run_folder, n_clips, data_folder)
    log_spec, _ = model.features(torch.stack(waves).to(model.device), with_phase=False)

    def maps_of(classifier):
        generator = torch.Generator().manual_seed(seed)
        return method_maps(classifier, log_spec, methods, trained, generator)[1]

    reference = maps_of(model.classifier)
    rows = []
    for level in LEVELS:
        randomised = maps_of(randomised_copy(model.classifier, level, seed))
        for method in methods:
            correlation = spearman(reference[method], randomised[method])
            mean = float(correlation.mean())
            rows.append(
                {
                    "method": method,
                    "randomised": level,
                    "spearman_mean": mean,
                    "spearman_std": float(correlation.std()) if len(correlation) > 1 else 0.0,
                    "n_clips": len(correlation),
                    "barely_changes": level != "none" and mean > BARELY_CHANGES,
                }
            )
    return rows


@torch.no_grad()
def deletion_rows(
    model,
    run_folder,
    n_clips=32,
    steps=10,
    methods=("by_design",),
    trained=None,
    data_folder=None,
    batch_size=8,
    seed=0,
):
    """Mean deletion / insertion curves and areas per method over the first test clips.

    Returns ``(curves, areas)``: rows ``method, curve, fraction, probability,
    probability_scaled`` and rows ``method, deletion_auc, insertion_auc, deletion_auc_scaled,
    insertion_auc_scaled, score_scale, n_clips`` (probabilities at scale 1, the paper's
    convention, and at the run's ``score_scale``, the model's real probabilities).
    """
    waves = _test_waves(model, run_folder, n_clips, data_folder)
    generator = torch.Generator().manual_seed(seed)
    sums = {method: None for method in methods}
    for start in range(0, len(waves), batch_size):
        log_spec, _ = model.features(
            torch.stack(waves[start : start + batch_size]).to(model.device), with_phase=False
        )
        _, maps = method_maps(model.classifier, log_spec, methods, trained, generator)
        for method in methods:
            result = deletion_insertion(
                model.classify, log_spec, maps[method], steps, score_scale=model.score_scale
            )
            batch_sums = {
                f"{key}{scale}": result[f"{key}{scale}"].sum(dim=0)
                for key in ("deletion", "insertion", "deletion_auc", "insertion_auc")
                for scale in ("", "_scaled")
            }
            if sums[method] is None:
                sums[method] = batch_sums
            else:
                sums[method] = {key: sums[method][key] + batch_sums[key] for key in batch_sums}
    fractions = torch.linspace(0, 1, steps + 1).tolist()
    curves, areas = [], []
    for method in methods:
        means = {key: value / len(waves) for key, value in sums[method].items()}
        for curve in ("deletion", "insertion"):
            scaled = means[f"{curve}_scaled"].tolist()
            for fraction, probability, probability_scaled in zip(
                fractions, means[curve].tolist(), scaled, strict=True
            ):
                curves.append(
                    {
                        "method": method,
                        "curve": curve,
                        "fraction": fraction,
                        "probability": probability,
                        "probability_scaled": probability_scaled,
                    }
                )
        areas.append(
            {
                "method": method,
                "deletion_auc": float(means["deletion_auc"]),
                "insertion_auc": float(means["insertion_auc"]),
                "deletion_auc_scaled": float(means["deletion_auc_scaled"]),
                "insertion_auc_scaled": float(means["insertion_auc_scaled"]),
                "score_scale": model.score_scale,
                "n_clips": len(waves),
            }
        )
    return curves, areas


class StudyFiles(NamedTuple):
    """Where a study's script writes by default (``<run>/<folder>/<summary>``) and the columns
    ``studies_over_runs`` averages over runs (``keys`` besides ``method`` tell rows apart)."""

    script: str
    folder: str
    summary: str
    keys: tuple
    figures: tuple


STUDIES = {
    "localisation": StudyFiles(
        "localisation.py",
        "localisation",
        "localisation_summary.csv",
        (),
        ("share_in_region", "iou", "chance_share"),
    ),
    "deletion_insertion": StudyFiles(
        "deletion_insertion.py",
        "deletion_insertion",
        "deletion_insertion_auc.csv",
        (),
        ("deletion_auc", "insertion_auc", "deletion_auc_scaled", "insertion_auc_scaled"),
    ),
    "sanity_check": StudyFiles(
        "sanity_check.py", "sanity_check", "sanity_check.csv", ("randomised",), ("spearman_mean",)
    ),
}


def studies_over_runs(run_folders) -> list[dict]:
    """Mean and sample standard deviation over runs (e.g. seeds) of each study's per-run figures.

    Reads each run's ``localisation_summary.csv``, ``deletion_insertion_auc.csv`` and
    ``sanity_check.csv`` (the scripts' default output folders under the run) and returns one row
    per study, method, level (the sanity check's ``randomised``; ``""`` elsewhere) and figure:
    ``study, method, level, figure, mean, std, n_runs``. Every run must hold every study for the
    same methods, so each mean is over the same runs.

    Example
    -------
    >>> import tempfile, pathlib
    >>> from recipes.outputs import write_csv_rows
    >>> runs = [pathlib.Path(tempfile.mkdtemp()) for _ in range(2)]
    >>> for run, share in zip(runs, (0.2, 0.4)):
    ...     for files in STUDIES.values():
    ...         (run / files.folder).mkdir()
    ...         row = {"method": "energy", **{k: "none" for k in files.keys}}
    ...         row.update({figure: share for figure in files.figures})
    ...         write_csv_rows([row], run / files.folder / files.summary)
    >>> row = studies_over_runs(runs)[0]
    >>> row["study"], row["figure"], round(row["mean"], 3), round(row["std"], 3), row["n_runs"]
    ('localisation', 'share_in_region', 0.3, 0.141, 2)
    """
    import csv
    import statistics

    from recipes.runs import RunFolderError

    runs = [Path(folder) for folder in run_folders]
    if not runs:
        raise RunFolderError("studies_over_runs: give at least one run folder")
    summary = []
    for study, files in STUDIES.items():
        name, keys = Path(files.folder) / files.summary, files.keys
        per_run = []
        for run in runs:
            path = run / name
            if not path.is_file():
                raise RunFolderError(
                    f"{path}: missing; run `python {files.script} "
                    f"--model_folder={run} --methods ...` first"
                )
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            per_run.append({(row["method"], *(row[k] for k in keys)): row for row in rows})
        first = list(per_run[0])
        for run, rows in zip(runs, per_run, strict=True):
            if sorted(rows) != sorted(first):
                raise RunFolderError(
                    f"{run / name}: holds {sorted({key[0] for key in rows})}, but "
                    f"{runs[0] / name} holds {sorted({key[0] for key in first})}: "
                    "run every study with the same --methods on every run"
                )
        for key in first:
            for figure in files.figures:
                values = [float(rows[key][figure]) for rows in per_run]
                summary.append(
                    {
                        "study": study,
                        "method": key[0],
                        "level": key[1] if keys else "",
                        "figure": figure,
                        "mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "n_runs": len(values),
                    }
                )
    return summary


def studies_markdown(summary: list[dict]) -> str:
    """``studies_over_runs``'s rows as three Markdown tables of ``mean +- std``: localisation
    (share of the mask in the named source's region, IoU, chance share), deletion / insertion
    areas (scale 1 and the run's score scale) and the randomisation check (mean Spearman
    correlation with the trained model's maps, per re-initialised level)."""
    from recipes.report import markdown_table

    tables = []
    for study in STUDIES:
        table, columns = {}, {}
        for row in (row for row in summary if row["study"] == study):
            column = row["level"] or row["figure"]  # the sanity check's level, else the figure
            columns[column] = None  # kept in first-seen order
            entry = table.setdefault(row["method"], {"method": row["method"]})
            entry["runs"] = str(row["n_runs"])
            entry[column] = f"{row['mean']:.3f} +- {row['std']:.3f}"
        rows = list(table.values())
        tables.append(f"{study}:\n\n" + markdown_table(rows, ["method", "runs", *columns]))
    return "\n".join(tables)
