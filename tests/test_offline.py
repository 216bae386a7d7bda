"""Offline nodes: what is not here and cannot be downloaded stops the command at once with one line;
``fetch.py`` fills the folders the recipes read, which then run with ``HF_HUB_OFFLINE=1``.

No test reaches the network: the hub is a HuggingFace cache folder filled by hand (the layout
``hf_hub_download`` writes) or a closed port on 127.0.0.1, ESC-50 a file:// zip archive.
"""

import json
import os
import shutil
import socket
import time
import urllib.error
import zipfile
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import transformers
import yaml
from recipe_runs import TINY_BACKBONE_CONFIG, run_script, tiny_args

from data_prep import esc50
from data_prep.esc50 import ESC50Error, download_file
from recipes import offline
from recipes.models import build_embedder
from recipes.offline import DownloadError, download_hub_files, hub_reachable

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROXIES = ("http_proxy", "HTTP_PROXY", *offline.PROXY_VARIABLES)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def _offline_env(**changes) -> dict:
    """The environment of a subprocess without proxies; ``None`` removes a variable."""
    env = {key: value for key, value in os.environ.items() if key not in PROXIES}
    env.update(changes)
    return {key: value for key, value in env.items() if value is not None}


def _hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Puts the files of ``folder`` into ``cache`` as ``hf_hub_download`` leaves a download."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        shutil.copy(file, snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def _one_line(text: str) -> str:
    assert "\n" not in text.strip(), text
    return text


def _hf_model(backbone: str):
    embedder = build_embedder(
        backbone, pretrained=False, config_overrides=yaml.safe_load(TINY_BACKBONE_CONFIG[backbone])
    )
    return next(m for m in embedder.modules() if isinstance(m, transformers.PreTrainedModel))


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A HuggingFace cache holding tiny ``org/tiny-focalnet`` and ``org/tiny-vit`` backbones (as
    fetch.py leaves ``pretrained_folder``); returns (cache folder, {backbone: saved model})."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    models = {}
    for backbone in ("focalnet", "vit"):
        models[backbone] = _hf_model(backbone)
        models[backbone].save_pretrained(root / "saved" / backbone)
        _hub_cache(root / "cache", f"org/tiny-{backbone}", root / "saved" / backbone)
    return root / "cache", models


@pytest.fixture
def no_network(monkeypatch):
    """No hub offline switch (even when the suite runs under HF_HUB_OFFLINE=1) and no proxy;
    any name look-up or connection fails the test."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *PROXIES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("backbone", ["focalnet", "vit"])
def test_cached_weights_load_without_touching_the_network(hub_cache, no_network, backbone):
    cache, models = hub_cache
    loaded = build_embedder(
        backbone, source=f"org/tiny-{backbone}", pretrained=True, cache_dir=str(cache)
    )
    model = next(m for m in loaded.modules() if isinstance(m, transformers.PreTrainedModel))
    reference = models[backbone].state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize("hub_off", [True, False])
def test_missing_weights_stop_at_once_with_one_line(tmp_path, monkeypatch, no_network, hub_off):
    if hub_off:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as at import
    else:  # no offline switch, no network: the probe says so, no download is tried
        monkeypatch.setattr(offline, "hub_reachable", lambda *args, **kwargs: False)
    monkeypatch.setattr("sys.argv", ["train_classifier.py", "hparams/vit.yaml", "--data_folder=d"])
    started = time.monotonic()
    with pytest.raises(DownloadError) as error:
        build_embedder("vit", source="org/absent", pretrained=True, cache_dir=str(tmp_path))
    assert time.monotonic() - started < 5
    message = _one_line(str(error.value))
    assert message.startswith(f"the pretrained weights of org/absent are not in {tmp_path}")
    reason = "HF_HUB_OFFLINE is set" if hub_off else "no connection to huggingface.co within 3 s"
    assert f"cannot be downloaded ({reason})" in message
    assert "run `python fetch.py hparams/vit.yaml --data_folder=d` on a machine with" in message
    assert message.endswith("or train from random weights with --pretrained=False")
    assert list(tmp_path.iterdir()) == []


def test_the_hub_probe_sees_an_open_and_a_closed_port(monkeypatch):
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert hub_reachable(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=1)
    assert not hub_reachable(f"http://127.0.0.1:{_closed_port()}", timeout=1)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:1")  # only the download can tell
    assert hub_reachable(f"http://127.0.0.1:{_closed_port()}", timeout=1)


def test_the_recipe_without_network_ends_in_one_line_within_seconds(tiny_data, tmp_path):
    """HF_HUB_OFFLINE unset, the hub a closed local port: no 25 s of retries, no traceback."""
    out = tmp_path / "run"
    env = _offline_env(HF_HUB_OFFLINE=None, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    args = [*tiny_args("focalnet", "focalnet", tiny_data, out), f"--pretrained_folder={tmp_path}"]
    args = [arg for arg in args if not arg.startswith("--backbone_config")]
    started = time.monotonic()
    result = run_script("train_classifier.py", args, env=env)
    elapsed = time.monotonic() - started
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[-1].startswith(
        "train_classifier.py: the pretrained weights of microsoft/focalnet-base are not in"
    )
    assert "no connection to 127.0.0.1:" in lines[-1] and "--pretrained=False" in lines[-1]
    assert "run `python fetch.py hparams/focalnet.yaml --data_folder=" in lines[-1]
    # The hub's retries would sleep about 25 s more than the same command with HF_HUB_OFFLINE=1
    # (which never opens a connection); comparing the two keeps the check free of the CPU's load.
    started = time.monotonic()
    run_script("train_classifier.py", args, env=_offline_env(HF_HUB_OFFLINE="1"))
    offline = time.monotonic() - started
    assert elapsed < offline + 12, (elapsed, offline)
    assert not out.exists()


def _zip_data(folder: Path, archive: Path) -> str:
    """``folder`` zipped as GitHub archives ESC-50 (one top folder); its file:// URL."""
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, "ESC-50-test/" + file.relative_to(folder).as_posix())
    return archive.as_uri()


def test_fetch_then_train_offline(tiny_data, hub_cache, tmp_path):
    """On the login node fetch.py fetches the data set (a file:// archive here) and checks the
    weights in pretrained_folder (the cache a download fills, filled by hand here); on the
    compute node the same command line trains with HF_HUB_OFFLINE=1."""
    cache, _ = hub_cache
    data, out = tmp_path / "ESC-50", tmp_path / "run"
    url = _zip_data(tiny_data, tmp_path / "esc50.zip")
    args = tiny_args("focalnet", "focalnet", data, out, f"--esc50_url={url}")
    args = [arg for arg in args if not arg.startswith(("--backbone_config", "--download"))]
    args += ["--source=org/tiny-focalnet", f"--pretrained_folder={cache}"]
    env = _offline_env(HF_HUB_OFFLINE="1")

    fetched = run_script("fetch.py", args, env=env)
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    assert f"data: ESC-50 downloaded into {data}" in fetched.stdout
    assert f"backbone: the pretrained weights of org/tiny-focalnet are in {cache}" in fetched.stdout
    assert "HF_HUB_OFFLINE=1 python train_classifier.py hparams/focalnet.yaml" in fetched.stdout
    assert (data / "meta" / "esc50.csv").is_file() and not out.exists()

    trained = run_script("train_classifier.py", [*args, "--download=False"], env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n_clips"] == 6
    assert json.loads((out / "model.json").read_text())["source"] == "org/tiny-focalnet"


def test_fetch_without_the_weights_says_what_is_missing(tiny_data, tmp_path):
    args = [
        "hparams/vit.yaml",
        f"--data_folder={tiny_data}",
        "--source=org/absent",
        f"--pretrained_folder={tmp_path}",
    ]
    result = run_script("fetch.py", args, env=_offline_env(HF_HUB_OFFLINE="1"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[-1].startswith(
        f"fetch.py: the pretrained weights of org/absent are not in {tmp_path} and cannot be "
        "downloaded (HF_HUB_OFFLINE is set)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def released_cache(tmp_path):
    """A cache holding a released model's checkpoints (no label_encoder.txt)."""
    files = tmp_path / "files"
    files.mkdir()
    for name in ("embedding_model.ckpt", "classifier.ckpt"):
        torch.save({"w": torch.zeros(1)}, files / name)
    _hub_cache(tmp_path / "cache", "org/released", files)
    return tmp_path / "cache"


def test_a_cached_released_model_is_found_offline(released_cache, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    names = ("embedding_model.ckpt", "classifier.ckpt", "label_encoder.txt")
    folder = download_hub_files(
        "org/released", names, released_cache, optional=("label_encoder.txt",)
    )
    assert sorted(p.name for p in folder.iterdir()) == ["classifier.ckpt", "embedding_model.ckpt"]
    with pytest.raises(DownloadError) as error:
        download_hub_files("org/other", names, released_cache, optional=("label_encoder.txt",))
    assert _one_line(str(error.value)) == (
        f"the released model org/other is not in {released_cache} (embedding_model.ckpt, "
        "classifier.ckpt missing) and cannot be downloaded (HF_HUB_OFFLINE is set): run "
        "`python fetch.py --released org/other` on a machine with internet first, or give the "
        "folder of a trained run instead"
    )


def test_fetch_checks_a_released_model(released_cache):
    args = ["--released", "org/released", f"--released_folder={released_cache}"]
    result = run_script("fetch.py", args, env=_offline_env(HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"released: org/released is in {released_cache}/models--org--released" in result.stdout


def test_an_esc50_download_without_network_names_both_ways_on(tmp_path, monkeypatch):
    def urlopen(request, timeout=None):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(esc50.urllib.request, "urlopen", urlopen)
    with pytest.raises(ESC50Error) as error:
        download_file("https://example.invalid/esc50.zip", tmp_path / "ESC-50.zip")
    message = _one_line(str(error.value))
    assert "Name or service not known" in message
    assert f"python fetch.py HPARAMS.yaml --data_folder={tmp_path}` on a machine" in message
    assert "or point --data_folder at a copy of ESC-50" in message
    assert list(tmp_path.iterdir()) == []
