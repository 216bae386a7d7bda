"""Start-up checks of the entry scripts: a bad setting stops them with one line naming the key,
a non-zero exit and nothing written; --test_only re-evaluates a finished run or refuses."""

import json

import pytest
from recipe_runs import run_script, tiny_args


def refused(result, *needles):
    """The script failed with a one-line message holding every needle, without a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert all(needle in lines[-1] for needle in needles), lines[-3:]
    return lines[-1]


@pytest.mark.parametrize(
    "override, needles",
    [
        ("--quantille=0.5", ["no key 'quantille'", "did you mean 'quantile'"]),
        ("--quantile=1.5", ["quantile is 1.5", "[0, 1]"]),
        ("--quantile=-0.1", ["quantile is -0.1"]),
        ("--test_folds=[7]", ["test_folds holds fold 7"]),
        ("--valid_folds=[3]", ["fold 3 is in both train_folds and valid_folds"]),
        ("--n_classes=7", ["n_classes is 7", "has 3 classes"]),
    ],
)
def test_bad_settings_are_refused_up_front(tiny_data, tmp_path, override, needles):
    out = tmp_path / "run"
    args = tiny_args("focalnet", "focalnet", tiny_data, out, "--pretrained=False", override)
    refused(run_script("train_classifier.py", args), *needles)
    assert not out.exists()


def test_a_required_path_left_unset_is_named(tiny_data, tmp_path):
    out = tmp_path / "piq"
    args = [
        "hparams/piq_focalnet.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={out}",
    ]
    refused(
        run_script("train_piq.py", args), "classifier_folder is required", "--classifier_folder="
    )
    assert not out.exists()


def test_data_errors_reach_the_user_as_one_line(tmp_path):
    out = tmp_path / "run"
    args = [
        "hparams/focalnet.yaml",
        f"--data_folder={tmp_path / 'no_such_data'}",
        f"--output_folder={out}",
        "--download=False",
        "--pretrained=False",
    ]
    refused(run_script("train_classifier.py", args), "no_such_data", "download=True")


def test_a_one_clip_last_batch_is_dropped(tiny_data, tmp_path):
    out = tmp_path / "run"  # 18 training clips in batches of 17
    args = tiny_args("focalnet", "focalnet", tiny_data, out, "--pretrained=False")
    result = run_script("train_classifier.py", [*args, "--batch_size=17"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "would leave a one-clip batch" in (out / "log.txt").read_text()


def test_an_unwritable_resample_cache_falls_back_with_a_message(tiny_data, tmp_path):
    """A cache folder that cannot be created (here under a regular file: a read-only data folder
    cannot be simulated as root) is replaced by one in the run folder, with a message."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    out = tmp_path / "run"
    args = tiny_args("focalnet", "focalnet", tiny_data, out, "--pretrained=False")
    args = [arg for arg in args if not arg.startswith("--resample_cache")]
    result = run_script("train_classifier.py", [*args, f"--resample_cache={blocker}/cache_16k"])
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert f"The resample cache {blocker}/cache_16k cannot be written" in log
    assert any((out / "cache_16k").iterdir())  # cached in the run folder instead
    assert blocker.read_text() == "a file"


def test_test_only_re_evaluates_a_finished_run(classifier_runs, tiny_data):
    run = classifier_runs["focalnet"]
    before = json.loads((run / "test_metrics.json").read_text())
    args = tiny_args("focalnet", "focalnet", tiny_data, run, "--pretrained=False", "--test_only")
    result = run_script("train_classifier.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    after = json.loads((run / "test_metrics.json").read_text())
    assert after == before
    assert "Test only mode" in (run / "log.txt").read_text()


def test_test_only_without_a_checkpoint_is_refused(tiny_data, tmp_path):
    out = tmp_path / "empty"
    args = tiny_args("focalnet", "focalnet", tiny_data, out, "--pretrained=False", "--test_only")
    refused(run_script("train_classifier.py", args), "--test_only", "holds no checkpoint")
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, hparams, warned",
    [
        (["--precision=bf16", "--device=cpu"], {}, True),
        (["--device=cpu"], {"precision": "bf16"}, True),  # the YAML's (esc10_focalnet.yaml)
        (["--device=cpu", "--precision=fp32"], {"precision": "bf16"}, False),  # command line wins
        (["--device=cpu", "--eval_precision=bf16"], {}, True),
        (["--device=cuda:0", "--precision=bf16"], {}, False),
        (["--device=cpu"], {}, False),
    ],
)
def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(argv, hparams, warned):
    import speechbrain as sb

    from recipes.cli import slow_bf16_warning

    _, run_opts, _ = sb.parse_arguments(["hparams/focalnet.yaml", *argv])
    warning = slow_bf16_warning(run_opts, hparams, native=lambda: False)
    assert (warning is not None) == warned
    if warned:
        assert "--precision=fp32" in warning
    assert slow_bf16_warning(run_opts, hparams, native=lambda: True) is None
