"""Every method of the registry through every study, on tiny models: no study can miss a method.

The method list comes from ``interpreters.methods.METHODS`` itself; a trained method needs a
tiny run of its own here (``TRAINED_RUNS``), so a new trained method without one fails loudly.
"""

import csv
import json
import shutil

import pytest
from recipe_runs import run_script

from interpreters.methods import METHODS

ALL = list(METHODS)
HARD = [name for name, method in METHODS.items() if method.mask == "hard"]
# The studies' default output folders under a run (what benchmarks/studies_over_seeds.py reads).
STUDY_FOLDERS = {
    "localisation": "localisation",
    "deletion": "deletion_insertion",
    "sanity": "sanity_check",
}


@pytest.fixture(scope="module")
def study(classifier_runs, piq_run, lmac_runs, l2i_run):
    """The FocalNet classifier run and the trained runs of every trained method on it."""
    runs = {"piq": piq_run, "lmac": lmac_runs["focalnet"], "l2i": l2i_run}
    trained = {m.run_name for m in METHODS.values() if m.run is not None}
    assert set(runs) == trained, "give every trained method of the registry a tiny run here"
    folder = classifier_runs["focalnet"]
    return folder, ["--methods", *ALL, "--runs", *map(str, runs.values())]


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_every_method_in_every_study(study, tiny_data, tmp_path):
    folder, methods = study
    model = [f"--model_folder={folder}"]

    # interpret.py: one PNG / WAV / JSON per method, and the page shows them all
    clip = next((tiny_data / "audio").glob("5-*.wav"))
    out = tmp_path / "interpret"
    _ok(
        run_script(
            "interpret.py", [*model, *methods, "--audio", str(clip), f"--output_folder={out}"]
        )
    )
    for name in ALL:
        summary = json.loads((out / f"{clip.stem}_{name}.json").read_text())
        assert summary["method"] == name
        assert (summary["quantile"] is None) == (METHODS[name].mask == "soft")
        assert (out / f"{clip.stem}_{name}.wav").is_file()
    page = (out / "report.html").read_text()
    assert all(f"{clip.stem}_{name}.png" in page for name in ALL)

    # mixture_demo.py
    out = tmp_path / "mixtures"
    _ok(run_script("mixture_demo.py", [*model, *methods, f"--output_folder={out}"]))
    assert len(list(out.glob("mixture_*.json"))) == len(ALL)
    for name in ALL:
        (summary,) = out.glob(f"mixture_*_spectral_{name}.json")
        assert json.loads(summary.read_text())["method"] == name

    # sweep_quantile.py: same-area methods at each q, soft ones once; report_table.py reads it
    out = tmp_path / "sweep"
    args = [f"--model_folders={folder}", *methods, "--quantiles", "0.5", "0.9"]
    _ok(run_script("sweep_quantile.py", [*args, f"--output_folder={out}"]))
    rows = _csv(folder / "quantile_sweep.csv")
    assert [(row["method"], row["q"]) for row in rows] == [
        (name, q) for name in ALL for q in (["0.5", "0.9"] if name in HARD else [""])
    ]
    table = tmp_path / "table1"
    sweep = str(out / "quantile_sweep.csv")
    _ok(run_script("report_table.py", [str(folder), "--sweep", sweep, "--output", str(table)]))
    labels = [row["Method"] for row in _csv(f"{table}.csv")]
    assert labels == ["FocalNet", *(f"FocalNet {name}" for name in HARD if name != "by_design")]

    # ood_eval.py
    out = tmp_path / "ood"
    args = [*model, *methods, "--conditions", "clean", "noise:6", f"--output_folder={out}"]
    _ok(run_script("ood_eval.py", args))
    assert [row["method"] for row in _csv(out / "ood.csv")] == ALL * 2

    # localisation.py
    out = tmp_path / "localisation"
    _ok(run_script("localisation.py", [*model, *methods, f"--output_folder={out}"]))
    assert [row["method"] for row in _csv(out / "localisation_summary.csv")] == ALL

    # deletion_insertion.py
    out = tmp_path / "deletion"
    args = [*model, *methods, "--n_clips", "3", "--steps", "2", f"--output_folder={out}"]
    _ok(run_script("deletion_insertion.py", args))
    assert [row["method"] for row in _csv(out / "deletion_insertion_auc.csv")] == ALL

    # sanity_check.py: the reference level reproduces every method's map exactly
    out = tmp_path / "sanity"
    args = [*model, *methods, "--n_clips", "3", f"--output_folder={out}"]
    _ok(run_script("sanity_check.py", args))
    rows = _csv(out / "sanity_check.csv")
    assert sorted({row["method"] for row in rows}) == sorted(ALL)
    for row in rows:
        if row["randomised"] == "none":
            assert float(row["spearman_mean"]) == pytest.approx(1.0, abs=1e-6), row["method"]

    # benchmarks/studies_over_seeds.py: the three studies' files, mean +- std over two runs
    # holding the same figures (the default folders under each run, as real_sound.sh leaves them)
    seeds = [tmp_path / "seed1", tmp_path / "seed2"]
    for seed in seeds:
        for study in ("localisation", "deletion", "sanity"):
            shutil.copytree(tmp_path / study, seed / STUDY_FOLDERS[study])
    out = tmp_path / "over_seeds"
    args = [*map(str, seeds), f"--output_folder={out}"]
    _ok(run_script("benchmarks/studies_over_seeds.py", args))
    summary = _csv(out / "studies_summary.csv")
    insertion = {
        row["method"]: row
        for row in summary
        if row["study"] == "deletion_insertion" and row["figure"] == "insertion_auc"
    }
    assert list(insertion) == ALL
    for row in _csv(tmp_path / "deletion" / "deletion_insertion_auc.csv"):
        entry = insertion[row["method"]]
        assert float(entry["mean"]) == pytest.approx(float(row["insertion_auc"]))
        assert float(entry["std"]) == 0.0 and entry["n_runs"] == "2"
    levels = {row["level"] for row in summary if row["study"] == "sanity_check"}
    assert levels == {"none", "head", "last_stage"}
    studies = {"localisation", "deletion_insertion", "sanity_check"}
    assert {row["study"] for row in summary} == studies
    assert "| method | runs |" in (out / "studies_summary.md").read_text()

    # a run without one of the studies is named, with the command that makes it
    shutil.rmtree(seeds[1] / "sanity_check")
    result = run_script("benchmarks/studies_over_seeds.py", [*args[:-1], f"--output_folder={out}2"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{seeds[1]}/sanity_check/sanity_check.csv: missing; run `python sanity_check.py" in (
        result.stderr
    )
    assert not (tmp_path / "over_seeds2").exists()


def test_a_trained_run_on_another_classifier_is_refused(classifier_runs, piq_run, tmp_path):
    args = [f"--model_folder={classifier_runs['vit']}", "--runs", str(piq_run)]
    result = run_script("ood_eval.py", [*args, "--conditions", "clean"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is a train_piq.py run on" in result.stderr
