"""``precision: auto``: bf16 where the device runs it natively, fp32 elsewhere; evaluation in fp32
unless asked; what was asked and what ran both in test_metrics.json."""

import json

import pytest
import speechbrain as sb
from recipe_runs import run_script, tiny_args

from recipes.cli import (
    auto_precision,
    check_settings,
    cpu_has_native_bf16,
    parse_command,
    resolve_precisions,
    slow_bf16_warning,
)

NATIVE_CPU, EMULATING_CPU = (lambda: True), (lambda: False)
BF16_GPU, OLD_GPU = (lambda device: True), (lambda device: False)


def _resolve(argv, hparams, cpu=EMULATING_CPU, cuda=OLD_GPU):
    _, run_opts, _, auto = parse_command(["hparams/esc10_focalnet.yaml", *argv])
    run_opts, requested = resolve_precisions(run_opts, hparams, auto, cpu, cuda)
    return run_opts.precision, run_opts.eval_precision, requested


@pytest.mark.parametrize(
    "argv, cpu, cuda, trained",
    [
        (["--device=cpu"], NATIVE_CPU, OLD_GPU, "bf16"),  # AVX512-BF16 or AMX
        (["--device=cpu"], EMULATING_CPU, BF16_GPU, "fp32"),  # AVX2 only: bf16 is emulated
        (["--device=cuda:0"], EMULATING_CPU, BF16_GPU, "bf16"),  # compute capability >= 8
        (["--device=cuda:0"], NATIVE_CPU, OLD_GPU, "fp32"),  # an older GPU
    ],
)
def test_auto_resolves_to_bf16_only_where_it_is_native(argv, cpu, cuda, trained):
    precision, eval_precision, requested = _resolve(argv, {"precision": "auto"}, cpu, cuda)
    assert (precision, eval_precision) == (trained, "fp32")
    assert requested == {"precision": "auto", "eval_precision": "fp32"}


@pytest.mark.parametrize(
    "argv, hparams, expected",
    [
        (["--device=cpu", "--precision=fp32"], {"precision": "auto"}, ("fp32", "fp32")),
        (["--device=cpu", "--precision=bf16"], {"precision": "auto"}, ("bf16", "fp32")),
        (["--device=cpu", "--precision=bf16"], {}, ("bf16", "fp32")),  # eval no longer follows
        (["--device=cpu", "--eval_precision=bf16"], {"precision": "auto"}, ("bf16", "bf16")),
        (["--device=cpu"], {"precision": "auto", "eval_precision": "auto"}, ("bf16", "bf16")),
        (["--device=cpu", "--precision=auto"], {}, ("bf16", "fp32")),  # auto on the command line
        (["--device=cpu", "--precision", "auto"], {"precision": "fp32"}, ("bf16", "fp32")),
        (["--device=cpu"], {}, ("fp32", "fp32")),  # a YAML without the key: fp32
    ],
)
def test_an_explicit_value_wins_and_evaluation_is_fp32_unless_asked(argv, hparams, expected):
    precision, eval_precision, _ = _resolve(argv, hparams, cpu=NATIVE_CPU)
    assert (precision, eval_precision) == expected


def test_the_slow_bf16_warning_is_kept_for_an_explicit_bf16_only():
    for argv, warned in ((["--precision=bf16"], True), ([], False)):
        _, run_opts, _, auto = parse_command(["hparams/esc10_focalnet.yaml", "--device=cpu", *argv])
        run_opts, _ = resolve_precisions(run_opts, {"precision": "auto"}, auto, EMULATING_CPU)
        warning = slow_bf16_warning(run_opts, {"precision": "auto"}, native=EMULATING_CPU)
        assert (warning is not None) == warned


def test_the_real_capability_checks_answer():
    assert cpu_has_native_bf16() in (True, False, None)
    assert auto_precision("cpu") in ("bf16", "fp32")
    assert auto_precision("mps") == "fp32"
    assert sb.utils.distributed.infer_device()  # what a run without --device uses


def test_a_precision_the_yaml_cannot_have_is_refused(tmp_path):
    yaml_file = tmp_path / "recipe.yaml"
    text = open("hparams/esc10_focalnet.yaml").read().replace("precision: auto", "precision: bf32")
    yaml_file.write_text(text)
    problem = check_settings(str(yaml_file), {"data_folder": "x"})
    assert problem == f"precision is bf32 in {yaml_file}: give one of auto, fp32, fp16, bf16"


@pytest.fixture(scope="module")
def auto_run(tiny_data, tmp_path_factory):
    """A tiny one-epoch run of hparams/esc10_focalnet.yaml, its default ``precision: auto``."""
    out = tmp_path_factory.mktemp("esc10_auto") / "run"
    extra = ["--subset=esc50", "--warmup_epochs=0"]  # the synthetic set has no ESC-10 rows
    result = run_script(
        "train_classifier.py", tiny_args("esc10_focalnet", "focalnet", tiny_data, out, *extra)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_a_run_records_what_was_asked_and_what_ran(auto_run):
    metrics = json.loads((auto_run / "test_metrics.json").read_text())
    expected = auto_precision("cpu")  # this machine's answer, as the run's
    assert metrics["precision_requested"] == "auto"
    assert metrics["precision"] == expected
    assert metrics["eval_precision_requested"] == metrics["eval_precision"] == "fp32"
    assert set(metrics["eval_dtypes"].values()) == {"float32"}
    log = (auto_run / "log.txt").read_text()
    assert f"Training in {expected} (precision: auto, on cpu: " in log
