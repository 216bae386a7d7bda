"""Interpretation evaluation beyond the paper: baselines and localisation on mixtures."""

import csv
import json
from pathlib import Path

import pytest
import torch
from recipe_runs import run_script, tiny_args

from interpreters.attributions import saliency
from interpreters.deletion import deletion_insertion
from interpreters.localisation import localisation_scores
from interpreters.maps import quantile_mask
from interpreters.methods import METHODS, MethodBatch
from interpreters.metrics import probabilities
from interpreters.sanity import randomised_copy, spearman
from recipes.inference import AudioInterpreter

BASELINES = ("random", "energy", "saliency")


class LinearClassifier:
    """A linear "classifier" of log-spectrograms: score_c = <w_c, x>."""

    def __init__(self, weights):
        self.weights = weights

    def scores(self, x):
        return torch.einsum("btf,ctf->bc", x, self.weights)

    def __call__(self, x, **_):
        return {"scores": self.scores(x)}


def baseline(name, log_spec, classifier=None, generator=None):
    batch = MethodBatch(log_spec, {}, classifier, generator)
    return METHODS[name].compute(batch)


def test_saliency_of_a_linear_classifier_is_its_predicted_class_weights():
    weights = torch.randn(3, 4, 5)

    model = LinearClassifier(weights)  # score_c = <w_c, x>
    log_spec = torch.rand(2, 4, 5)
    predicted = model.scores(log_spec).argmax(dim=1)
    assert torch.allclose(saliency(model, log_spec), weights[predicted].abs())
    assert not log_spec.requires_grad  # the caller's tensor is untouched


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_masks_keep_the_same_area_as_the_by_design_mask(name):
    log_spec = torch.rand(3, 431, 513)
    linear = torch.randn(2, 431, 513)
    generator = torch.Generator().manual_seed(0)
    values = baseline(name, log_spec, LinearClassifier(linear), generator)
    for q in (0.5, 0.9):
        kept = quantile_mask(values, q).mean(dim=(1, 2))
        assert torch.allclose(kept, torch.full((3,), 1 - q), atol=2e-3), (name, q, kept)


def test_energy_baseline_keeps_the_loudest_cells():
    log_spec = torch.zeros(1, 4, 4)
    log_spec[0, 1, 2], log_spec[0, 3, 0] = 5.0, 4.0
    mask = quantile_mask(baseline("energy", log_spec), 0.875)
    assert mask.nonzero().tolist() == [[0, 1, 2], [0, 3, 0]]


def test_sweep_and_table_with_baselines(classifier_runs, tmp_path):
    figures = tmp_path / "figures"
    args = [
        "--model_folders",
        str(classifier_runs["focalnet"]),
        "--methods",
        "by_design",
        *BASELINES,
        "--quantiles",
        "0.5",
        "0.9",
        "--output_folder",
        str(figures),
    ]
    result = run_script("sweep_quantile.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(figures / "quantile_sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    methods = ["FocalNet", "FocalNet random", "FocalNet energy", "FocalNet saliency"]
    assert sorted({row["method"] for row in rows}) == sorted(methods)
    assert all(0 <= float(row["fid_i"]) <= 1 for row in rows)
    # Same classifier, same clips: the accuracy column is the same for every mask.
    assert len({row["acc"] for row in rows}) == 1
    # Edge shares: the first and last 0.25 s are 22 + 22 of 431 frames; a uniformly random mask
    # puts about that share of itself there, and no share leaves [0, 1].
    assert [float(row["edge_area"]) for row in rows] == [pytest.approx(44 / 431)] * len(rows)
    for row in rows:
        first, last = float(row["mask_first"]), float(row["mask_last"])
        assert 0 <= first <= 1 and 0 <= last <= 1
        if row["method"] == "FocalNet random":
            assert first + last == pytest.approx(44 / 431, abs=0.02)

    table = tmp_path / "table1"
    result = run_script(
        "report_table.py",
        [
            str(classifier_runs["focalnet"]),
            "--sweep",
            str(figures / "quantile_sweep.csv"),
            "--output",
            str(table),
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (tmp_path / "table1.md").read_text().splitlines()[2:]
    assert [line.split(" | ")[0][2:] for line in lines] == methods
    at_09 = {row["method"]: row for row in rows if float(row["q"]) == 0.9}
    assert lines[3].split(" | ")[2] == f"{float(at_09['FocalNet saliency']['fid_i']):.3f}"
    missing_q = run_script(
        "report_table.py",
        [
            str(classifier_runs["focalnet"]),
            "--sweep",
            str(figures / "quantile_sweep.csv"),
            "--q",
            "0.3",
            "--output",
            str(table),
        ],
    )
    assert missing_q.returncode != 0 and "q=0.3" in missing_q.stderr


def test_localisation_scores_known_answers():
    region = torch.zeros(2, 6, 8, dtype=torch.bool)
    region[:, 1:3, 2:6] = True  # 8 cells
    exact = localisation_scores(region.float(), region)
    assert exact["iou"].tolist() == [1.0, 1.0] and exact["share_in_region"].tolist() == [1.0, 1.0]
    elsewhere = torch.zeros(2, 6, 8)
    elsewhere[:, 4:, :4] = 1  # ignores the sound: disjoint from its region
    assert localisation_scores(elsewhere, region)["iou"].tolist() == [0.0, 0.0]
    half = region.float().clone()
    half[:, 1] = 0  # half of the region, nothing outside it
    scores = localisation_scores(half, region)
    assert scores["share_in_region"].tolist() == [1.0, 1.0] and scores["iou"].tolist() == [0.5, 0.5]


def test_localisation_end_to_end_on_synthetic_mixtures(classifier_runs, piq_run, tmp_path):
    out = tmp_path / "localisation"
    args = [
        "--model_folder",
        str(classifier_runs["focalnet"]),
        "--runs",
        str(piq_run),
        "--methods",
        "by_design",
        "random",
        "energy",
        "piq",
        "--output_folder",
        str(out),
    ]
    result = run_script("localisation.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "localisation.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Test fold, in id order: 2 clips of class 0, then of class 1, then of class 2. Greedy
    # pairing gives (0, 1) twice; the two class-2 clips are left: 2 mixtures, 4 methods each.
    assert len(rows) == 8 and {row["method"] for row in rows} == {
        "by_design",
        "random",
        "energy",
        "piq",
    }
    for row in rows:
        assert 0 <= float(row["share_in_region"]) <= 1 and 0 <= float(row["iou"]) <= 1
        assert 0 < float(row["region_area"]) < 1
    assert (out / "localisation.png").stat().st_size > 5_000
    wrong = run_script(
        "localisation.py",
        ["--model_folder", str(classifier_runs["vit"]), "--runs", str(piq_run)],
    )
    assert wrong.returncode != 0 and "is a train_piq.py run on" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def test_spearman_known_answers():
    a = torch.arange(12.0).view(1, 3, 4)
    assert spearman(a, a.exp()).tolist() == [1.0]  # any increasing transform
    assert spearman(a, -a).tolist() == [-1.0]
    shuffled = a.flatten()[torch.tensor([1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10])].view(1, 3, 4)
    expected = 1 - 6 * 12 / (12 * (12**2 - 1))  # six swaps of neighbours: d^2 = 1 each x 12
    assert spearman(a, shuffled).item() == pytest.approx(expected, abs=1e-6)


def test_spearman_ties_get_average_ranks():
    # scipy.stats.spearmanr([0, 0, 0, 1, 2], [0, 0, 0, 2, 1]) = 0.875 (average ranks); breaking
    # the ties by position would give 0.9
    x, y = torch.tensor([[0.0, 0, 0, 1, 2]]), torch.tensor([[0.0, 0, 0, 2, 1]])
    assert spearman(x, y).item() == pytest.approx(0.875, abs=1e-6)
    # a tied block carries no order: how the other map orders the block's cells cannot matter
    # (with ties broken by position the first pair would correlate perfectly, the second not)
    tied = torch.tensor([[0.0, 0, 0, 0, 1, 2, 3]])
    ascending = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7]])
    descending = torch.tensor([[4.0, 3, 2, 1, 5, 6, 7]])
    assert spearman(tied, ascending).item() == pytest.approx(spearman(tied, descending).item())
    assert spearman(tied, ascending).item() < 1.0


def test_randomisation_of_the_last_vit_layer(classifier_runs):
    model = AudioInterpreter.from_run(classifier_runs["vit"]).model.classifier
    randomised = randomised_copy(model, "last_stage")
    original = dict(model.backbone.last_stage().named_parameters())
    changed = [
        name
        for name, parameter in randomised.backbone.last_stage().named_parameters()
        if not torch.equal(parameter, original[name])
    ]
    assert changed and torch.equal(
        randomised.embedding_model.backbone.embeddings.patch_embeddings.projection.weight,
        model.embedding_model.backbone.embeddings.patch_embeddings.projection.weight,
    )


def test_randomisation_sanity_check(classifier_runs, tmp_path):
    out = tmp_path / "sanity"
    args = ["--model_folder", str(classifier_runs["focalnet"]), "--n_clips", "4", "--methods"]
    args += ["by_design", "saliency", "energy"]
    result = run_script("sanity_check.py", [*args, "--output_folder", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "sanity_check.csv") as handle:
        rows = {(row["method"], row["randomised"]): row for row in csv.DictReader(handle)}
    for method in ("by_design", "saliency", "energy"):
        # Re-initialising with the same weights changes nothing: correlation exactly 1.
        assert float(rows[(method, "none")]["spearman_mean"]) == pytest.approx(1.0, abs=1e-6)
    # Known answers: the modulation map is computed before the head, and the energy map
    # ignores the model, so neither changes with the head; the last stage changes the former.
    assert float(rows[("by_design", "head")]["spearman_mean"]) == pytest.approx(1.0, abs=1e-6)
    assert rows[("energy", "last_stage")]["barely_changes"] == "True"
    assert float(rows[("by_design", "last_stage")]["spearman_mean"]) < 0.99
    assert (out / "sanity_check.png").is_file()


def test_deletion_insertion_curves_on_a_tiny_model(classifier_runs):
    model = AudioInterpreter.from_run(classifier_runs["focalnet"])
    with torch.no_grad():
        log_spec = model.features(torch.randn(3, 80000).clamp(-1, 1))[0]
        ranking = METHODS["by_design"].compute(
            MethodBatch(log_spec, model.model.classifier(log_spec, with_map=True), None)
        )
    for steps in (1, 4, 7):
        curves = deletion_insertion(model.classify, log_spec, ranking, steps)
        fractions = curves["fractions"].tolist()
        assert len(fractions) == steps + 1 and fractions == sorted(fractions)
        assert fractions[0] == 0 and fractions[-1] == 1
        p_x = probabilities(model.classify(log_spec)).max(dim=1).values
        p_empty = probabilities(model.classify(torch.zeros_like(log_spec)))
        p_empty = p_empty.gather(1, model.classify(log_spec).argmax(1, keepdim=True)).squeeze(1)
        # Known ends: nothing removed = the clip; everything removed = the empty input.
        assert torch.allclose(curves["deletion"][:, 0], p_x, atol=1e-6)
        assert torch.allclose(curves["insertion"][:, -1], p_x, atol=1e-6)
        assert torch.allclose(curves["deletion"][:, -1], p_empty, atol=1e-6)
        assert torch.allclose(curves["insertion"][:, 0], p_empty, atol=1e-6)
        for key in ("deletion_auc", "insertion_auc"):
            assert ((curves[key] >= 0) & (curves[key] <= 1)).all()


def test_deletion_removes_the_cells_a_same_area_mask_keeps_on_a_map_with_ties():
    generator = torch.Generator().manual_seed(7)
    log_spec = torch.rand(2, 20, 30, generator=generator) + 0.5  # no zero cell: removal shows
    ranking = torch.randint(0, 4, (2, 20, 30), generator=generator).float()  # 4 values: ties
    weights = torch.randn(3, 20, 30, generator=generator)
    inputs = []

    def classify(x):  # records the inputs it is given
        inputs.append(x.clone())
        return torch.nn.functional.normalize(torch.einsum("btf,ctf->bc", x, weights), dim=1)

    steps = 10
    curves = deletion_insertion(classify, log_spec, ranking, steps, score_scale=30.0)
    fractions = curves["fractions"].tolist()
    for fraction, both in zip(fractions, inputs[1:], strict=True):  # inputs[0]: the clips
        kept = quantile_mask(ranking, 1 - fraction)  # the same-area mask at q = 1 - f
        deleted, inserted = both.chunk(2)
        assert torch.equal(deleted == 0, kept.bool()), fraction  # exactly its cells removed
        assert torch.equal(inserted != 0, kept.bool()), fraction  # and restored
    again = deletion_insertion(classify, log_spec, ranking, steps, score_scale=30.0)
    for key in ("deletion", "insertion", "deletion_scaled", "insertion_scaled"):
        assert torch.equal(curves[key], again[key]), key  # the tie order is fixed
    # Both scales come from the same forwards: softmax(s) and softmax(30 s) of the clip.
    scores = classify(log_spec)
    c = scores.argmax(dim=1, keepdim=True)
    for suffix, scale in (("", 1.0), ("_scaled", 30.0)):
        p_x = torch.softmax(scale * scores, dim=1).gather(1, c).squeeze(1)
        assert torch.allclose(curves[f"deletion{suffix}"][:, 0], p_x, atol=1e-6)
        auc = curves[f"deletion_auc{suffix}"]
        assert ((auc >= 0) & (auc <= 1)).all()


def test_deletion_insertion_script(classifier_runs, tmp_path):
    out = tmp_path / "deletion"
    args = [
        "--model_folder",
        str(classifier_runs["focalnet"]),
        "--methods",
        "by_design",
        "random",
        "--steps",
        "3",
        "--n_clips",
        "4",
        "--output_folder",
        str(out),
    ]
    result = run_script("deletion_insertion.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "deletion_insertion_curves.csv") as handle:
        curves = list(csv.DictReader(handle))
    assert len(curves) == 2 * 2 * 4  # 2 methods x 2 curves x (3 steps + 1)
    with open(out / "deletion_insertion_auc.csv") as handle:
        areas = list(csv.DictReader(handle))
    assert [row["method"] for row in areas] == ["by_design", "random"]
    assert all(
        0 <= float(row[key]) <= 1 for row in areas for key in ("deletion_auc", "insertion_auc")
    )


def test_cross_validation_over_two_folds_resumes_and_aggregates(tiny_data, tmp_path):
    out = tmp_path / "cv"
    overrides = tiny_args("focalnet", "focalnet", tiny_data, out)[3:]  # no hparams/data/output
    args = [
        "hparams/focalnet.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={out}",
        "--folds",
        "4",
        "5",
        "--train",
        "piq=hparams/piq_focalnet.yaml",
        "--methods",
        "by_design",
        "gradcam",
        "piq",
        "--classifier_args=--pretrained=False",
        "--method_args",
        "piq=--interpreter_width=8 --codebook_size=12",
        "--",
        *overrides,
    ]
    result = run_script("cross_validate.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "cv_runs.csv") as handle:
        runs = list(csv.DictReader(handle))
    assert [(row["fold"], row["method"]) for row in runs] == [
        (fold, method) for fold in ("4", "5") for method in ("by_design", "gradcam", "piq")
    ]
    assert {row["backbone"] for row in runs} == {"focalnet"}
    # Scored as the recipes score their test fold: by_design and PIQ as in test_metrics.json.
    for row in runs:
        if row["method"] in ("by_design", "piq"):
            folder = Path(row["run"]) / ("piq" if row["method"] == "piq" else "")
            recipe = json.loads((folder / "test_metrics.json").read_text())
            for key in ("acc", "fid_i", "fa", "ai", "ai_unscaled"):
                assert float(row[key]) == pytest.approx(recipe[key], rel=1e-4, abs=1e-6), key
    assert [row["q"] for row in runs[:3]] == ["0.9", "0.9", ""]  # PIQ's mask is soft
    # Fold 4 is tested with fold 3 validating: its manifests say so.
    manifest = json.loads((out / "fold4" / "seed1234" / "manifests" / "test.json").read_text())
    assert {entry["fold"] for entry in manifest.values()} == {4}
    with open(out / "cv_summary.csv") as handle:
        summary = {row["method"]: row for row in csv.DictReader(handle)}
    fids = [float(row["fid_i"]) for row in runs if row["method"] == "gradcam"]
    assert float(summary["gradcam"]["fid_i_mean"]) == pytest.approx(sum(fids) / 2)
    assert float(summary["gradcam"]["fid_i_std"]) == pytest.approx(abs(fids[0] - fids[1]) / 2**0.5)
    assert (out / "cv_summary.png").is_file()
    # The Markdown tables hold the same means: Grad-CAM's FID-I row, to the table's 3 decimals.
    markdown = (out / "cv_summary.md").read_text()
    gradcam_rows = [line for line in markdown.splitlines() if line.startswith("| gradcam | 2 |")]
    assert len(gradcam_rows) == 2  # one in the scaled table, one in the scale-1 table
    assert f"{sum(fids) / 2:.3f} +- " in gradcam_rows[0].split(" | ")[3]
    # A second call finds every run done and only aggregates again.
    again = run_script("cross_validate.py", args)
    assert again.returncode == 0 and again.stdout.count("done already") == 4
    assert "scoring" not in again.stdout  # every score read back from the runs' cv_scores.csv
    with open(out / "cv_runs.csv") as handle:
        assert list(csv.DictReader(handle)) == runs


def test_cross_validation_without_validation_tests_the_last_epoch(tiny_data, tmp_path):
    """--validation=none: four folds train, no valid split, the last epoch's model is tested."""
    out = tmp_path / "cv"
    overrides = tiny_args("focalnet", "focalnet", tiny_data, out, "--number_of_epochs=2")[3:]
    args = ["hparams/focalnet.yaml", f"--data_folder={tiny_data}", f"--output_folder={out}"]
    args += ["--folds", "2", "--validation", "none", "--classifier_args=--pretrained=False"]
    result = run_script("cross_validate.py", [*args, "--", *overrides])
    assert result.returncode == 0, result.stderr[-3000:]
    run = out / "fold2" / "seed1234"
    manifests = {
        split: json.loads((run / "manifests" / f"{split}.json").read_text())
        for split in ("train", "valid", "test")
    }
    assert {entry["fold"] for entry in manifests["train"].values()} == {1, 3, 4, 5}
    assert manifests["valid"] == {}
    assert {entry["fold"] for entry in manifests["test"].values()} == {2}
    # One checkpoint is kept, the second epoch's, and it is the one a run folder loads.
    from recipes.runs import build_classifier, load_classifier_checkpoint, read_model_card

    embedding_model, classifier = build_classifier(read_model_card(run))
    meta = load_classifier_checkpoint(
        run, {"embedding_model": embedding_model, "classifier": classifier}
    )
    assert meta["epoch"] == 2 and meta["no_validation"] is True
    assert len(list((run / "save").glob("CKPT+*"))) == 1
    assert "epoch: 2" in (run / "train_log.txt").read_text()
    assert json.loads((run / "test_metrics.json").read_text())["n_clips"] == 6
    # PIQ selects on validation FID-I: without validation folds it says so instead of failing.
    piq = run_script(
        "train_piq.py",
        tiny_args(
            "piq_focalnet",
            "focalnet",
            tiny_data,
            tmp_path / "piq",
            f"--classifier_folder={run}",
            "--valid_folds=[]",
        ),
    )
    assert piq.returncode != 0 and "valid_folds is empty" in piq.stderr
