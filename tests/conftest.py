"""Shared fixtures: a small synthetic ESC-50 set and the real ESC-50 subset in ../shared."""

import os
from pathlib import Path

import pytest
from recipe_runs import run_script, tiny_args

from data_prep.synthetic import generate_synthetic_esc50
from recipes.allocator import keep_freed_memory

keep_freed_memory()  # the in-process tests allocate as the entry scripts do (recipes/allocator.py)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_SUBSET = Path(os.environ.get("ESC50_SUBSET", SHARED_DATA / "ESC-50-subset"))
REAL_ESC10 = Path(os.environ.get("ESC10_FOLDER", SHARED_DATA / "ESC-10"))


def require_shared_data(folder: Path, what: str) -> Path:
    """``folder`` when it holds a data set; else a failure under ``CI=true`` (CI always has
    ../shared beside the clone), a skip elsewhere."""
    if (folder / "meta" / "esc50.csv").is_file():
        return folder
    message = (
        f"{what} not found at {folder}: put the project's shared data beside the clone "
        "(../shared/data, see its README) or set the path in the environment"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves ``os.environ`` as it found it. SpeechBrain's ``setup_logging`` (a Brain
    made in-process) sets ``SB_LOG_LEVEL=DEBUG`` for good; the entry scripts the later tests run
    would inherit it, and the script server (tests/script_server.py) serves only the suite's
    own environment."""
    before = dict(os.environ)
    yield
    if dict(os.environ) != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture(scope="session")
def synthetic_esc50(tmp_path_factory):
    """3 classes x 1 clip x 5 folds of 5 s synthetic clips in ESC-50's layout (read-only use)."""
    folder = tmp_path_factory.mktemp("synthetic_esc50")
    rows = generate_synthetic_esc50(folder, n_classes=3, clips_per_class_per_fold=1, seed=0)
    return folder, rows


@pytest.fixture(scope="session")
def real_subset():
    """The real ESC-50 subset of ../shared/data (414 WAVs); see ``require_shared_data``."""
    return require_shared_data(REAL_SUBSET, "The real ESC-50 subset (ESC50_SUBSET)")


@pytest.fixture(scope="session")
def real_esc10():
    """The complete real ESC-10 of ../shared/data (400 OGGs); see ``require_shared_data``."""
    return require_shared_data(REAL_ESC10, "The real ESC-10 (ESC10_FOLDER)")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """3 classes x 2 clips x 5 folds of synthetic ESC-50 for end-to-end recipe runs."""
    folder = tmp_path_factory.mktemp("tiny_esc50")
    generate_synthetic_esc50(folder, n_classes=3, clips_per_class_per_fold=2, seed=1)
    return folder


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """The README's offline quickstart classifier step, exactly; returns (data, output) folders."""
    root = tmp_path_factory.mktemp("quickstart")
    data, out = root / "synthetic", root / "quickstart-focalnet"
    args = [
        "hparams/focalnet.yaml",
        f"--data_folder={data}",
        "--overrides_file=hparams/quickstart.yaml",
        f"--output_folder={out}",
    ]
    result = run_script("train_classifier.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    return data, out


@pytest.fixture(scope="session")
def classifier_runs(tiny_data, tmp_path_factory):
    """A tiny one-epoch classifier run per backbone: {"focalnet": folder, "vit": folder}."""
    runs = {}
    for backbone in ("focalnet", "vit"):
        out = tmp_path_factory.mktemp(f"classifier_{backbone}")
        args = tiny_args(backbone, backbone, tiny_data, out, "--pretrained=False")
        result = run_script("train_classifier.py", args)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[backbone] = out
    return runs


@pytest.fixture(scope="session")
def piq_run(classifier_runs, tiny_data, tmp_path_factory):
    """A tiny one-epoch PIQ run on the tiny FocalNet classifier run."""
    out = tmp_path_factory.mktemp("piq_focalnet")
    args = tiny_args(
        "piq_focalnet",
        "focalnet",
        tiny_data,
        out,
        f"--classifier_folder={classifier_runs['focalnet']}",
        "--interpreter_width=8",
        "--codebook_size=12",
    )
    result = run_script("train_piq.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def lmac_runs(classifier_runs, tiny_data, tmp_path_factory):
    """A tiny two-epoch L-MAC run per backbone on the tiny classifier runs."""
    runs = {}
    for backbone in ("focalnet", "vit"):
        out = tmp_path_factory.mktemp(f"lmac_{backbone}")
        args = tiny_args(
            f"lmac_{backbone}",
            backbone,
            tiny_data,
            out,
            f"--classifier_folder={classifier_runs[backbone]}",
            "--decoder_width=8",
            "--number_of_epochs=2",
        )
        result = run_script("train_lmac.py", args)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[backbone] = out
    return runs


@pytest.fixture(scope="session")
def listening_test(classifier_runs, tmp_path_factory):
    """A 3-clip listening test (one clip per class, by_design / gradcam / energy at q = 0.8,
    A/B pages by_design vs energy) of the tiny FocalNet run: ``(folder, test definition)``."""
    from recipes.listening.stimuli import make_test

    folder = tmp_path_factory.mktemp("listening") / "test"
    test = make_test(
        classifier_runs["focalnet"],
        ["by_design", "gradcam", "energy"],
        folder,
        n_clips=3,
        quantile=0.8,
        seed=3,
        ab=["by_design", "energy"],
        progress=lambda line: None,
    )
    return folder, test


@pytest.fixture(scope="session")
def cnn14_run(synthetic_esc50, tmp_path_factory):
    """A tiny one-epoch CNN14 classifier run (hparams/esc10_cnn14.yaml, linear head) on the
    3-class synthetic set (one clip per class and fold)."""
    data, _ = synthetic_esc50
    out = tmp_path_factory.mktemp("classifier_cnn14")
    args = tiny_args(
        "esc10_cnn14",
        "cnn14",
        data,
        out,
        "--subset=esc50",
        "--warmup_epochs=0",
        "--precision=fp32",
    )
    result = run_script("train_classifier.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def l2i_run(classifier_runs, tiny_data, tmp_path_factory):
    """A tiny one-epoch L2I run (2 NMF epochs, 8 components) on the tiny FocalNet classifier."""
    out = tmp_path_factory.mktemp("l2i_focalnet")
    args = tiny_args(
        "l2i_focalnet",
        "focalnet",
        tiny_data,
        out,
        f"--classifier_folder={classifier_runs['focalnet']}",
        "--nmf_epochs=2",
        "--n_components=8",
    )
    result = run_script("train_l2i.py", args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out
