"""benchmarks/real_sound.sh's wiring: which recipes, overrides and methods each backbone gets.

The script's Python is replaced by a stub that records its arguments (and writes the summary the
script prints), so no model is trained: what is checked is the command lines the benchmark runs.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "real_sound.sh"

STUB = """#!{python}
import json, os, sys
from pathlib import Path
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "cross_validate.py":
    out = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--output_folder="))
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "cv_summary.md").write_text("summary\\n")
"""


def run_script(tmp_path, backbone, **env):
    """Runs real_sound.sh with the stub; returns (completed process, the stub's calls)."""
    stub = tmp_path / "python"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    environ = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log), **env}
    for key in ("SEEDS", "METHODS", "CLASSIFIER_ARGS", "METHOD_ARGS", "STUDIES"):
        if key not in env:
            environ.pop(key, None)
    result = subprocess.run(
        ["bash", str(SCRIPT), "DATA", str(tmp_path / "out"), backbone],
        env=environ,
        capture_output=True,
        text=True,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def values_after(argv, flag):
    """The values of ``flag`` in ``argv`` (up to the next ``--`` option)."""
    start = argv.index(flag) + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    return argv[start:end]


def test_cnn14_scores_every_method_but_by_design_and_trains_l2i(tmp_path):
    result, calls = run_script(tmp_path, "cnn14")
    assert result.returncode == 0, result.stderr
    cv = calls[0]
    assert cv[:2] == ["cross_validate.py", "hparams/esc10_cnn14.yaml"]
    methods = values_after(cv, "--methods")
    assert "by_design" not in methods
    assert {"l2i", "l2i_hard", "lmac", "lmac_hard", "piq", "piq_hard", "gradcam"} <= set(methods)
    assert len(methods) == 20  # the FocalNet's 19 - by_design + l2i, l2i_hard
    assert values_after(cv, "--train") == [
        "piq=hparams/piq_cnn14.yaml",
        "lmac=hparams/lmac_cnn14.yaml",
        "l2i=hparams/l2i_cnn14.yaml",
    ]
    method_args = values_after(cv, "--method_args")
    assert [arg.split("=", 1)[0] for arg in method_args] == ["piq", "lmac", "l2i"]
    for arg in method_args:  # every overrides file named exists
        overrides = arg.split("--overrides_file=", 1)[1].split()[0]
        assert (REPO / overrides).is_file(), overrides
    assert values_after(cv, "--seeds") == ["1", "2", "3"]
    # then the three studies on each seed's run, with the three trained runs, and the summary
    scripts = [call[0] for call in calls[1:]]
    assert scripts == ["localisation.py", "deletion_insertion.py", "sanity_check.py"] * 3 + [
        "benchmarks/studies_over_seeds.py"
    ]
    runs = values_after(calls[1], "--runs")
    assert [Path(run).name for run in runs] == ["piq", "lmac", "l2i"]


def test_a_method_subset_trains_only_what_it_scores(tmp_path):
    result, calls = run_script(
        tmp_path,
        "cnn14",
        SEEDS="1",
        METHODS="random lmac_hard",
        CLASSIFIER_ARGS="--number_of_epochs=20",
        METHOD_ARGS="--number_of_epochs=2",
    )
    assert result.returncode == 0, result.stderr
    cv = calls[0]
    assert values_after(cv, "--methods") == ["random", "lmac_hard"]
    assert values_after(cv, "--train") == ["lmac=hparams/lmac_cnn14.yaml"]
    assert values_after(cv, "--method_args") == [
        "lmac=--overrides_file=hparams/esc10_cnn14_lmac.yaml --number_of_epochs=2"
    ]
    assert "--classifier_args=--number_of_epochs=20" in cv
    assert values_after(cv, "--seeds") == ["1"]
    assert [Path(run).name for run in values_after(calls[1], "--runs")] == ["lmac"]
    assert len(calls) == 1 + 3 + 1  # one seed's three studies, then the summary


def test_untrained_methods_only_and_no_studies(tmp_path):
    result, calls = run_script(tmp_path, "cnn14", METHODS="random energy", STUDIES="0")
    assert result.returncode == 0, result.stderr
    assert len(calls) == 1 and "--train" not in calls[0] and "--method_args" not in calls[0]


def test_focalnet_keeps_its_by_design_row_and_no_l2i(tmp_path):
    result, calls = run_script(tmp_path, "focalnet", STUDIES="0")
    assert result.returncode == 0, result.stderr
    methods = values_after(calls[0], "--methods")
    assert methods[0] == "by_design" and "l2i" not in methods and len(methods) == 19
    assert values_after(calls[0], "--train") == [
        "piq=hparams/piq_focalnet.yaml",
        "lmac=hparams/lmac_focalnet.yaml",
    ]


@pytest.mark.parametrize("backbone", ["resnet", "cnn14 focalnet"])
def test_an_unknown_backbone_is_refused_in_one_line(tmp_path, backbone):
    result, calls = run_script(tmp_path, backbone)
    assert result.returncode == 2 and calls == []
    assert "BACKBONE must be focalnet, vit or cnn14" in result.stderr


def test_a_trained_method_without_overrides_for_the_backbone_is_refused_before_training(tmp_path):
    result, calls = run_script(tmp_path, "focalnet", METHODS="random l2i")
    assert result.returncode == 2 and calls == []
    assert "hparams/esc10_focalnet_l2i.yaml" in result.stderr
