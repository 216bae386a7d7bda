#!/usr/bin/env python3
"""Fetch what a recipe needs on a machine with internet, so that it then runs without network.

    python fetch.py hparams/focalnet.yaml --data_folder=data/ESC-50
    python fetch.py hparams/vit.yaml --data_folder=data/ESC-50 --released speechbrain/vit-base-esc50
    python fetch.py --released speechbrain/focalnet-base-esc50

Give it the recipe's own command line (the YAML and the same overrides; run options such as
``--device`` are accepted and ignored). It fetches into the folders the recipe reads:

- the data set: ESC-50 from the YAML's ``esc50_url`` into ``data_folder`` (nothing when the folder
  already holds a data set in ESC-50's layout, or the YAML writes a synthetic one);
- the backbone's pretrained weights (``pretrained: True``): ``source`` into ``pretrained_folder``,
  the cache the recipe's ``from_pretrained`` reads;
- each ``--released`` model (SpeechBrain's released checkpoints, for ``interpret.py``) into
  ``--released_folder`` (default ``pretrained_models``, where ``interpret.py`` looks).

Then it checks without network (as under ``HF_HUB_OFFLINE=1``) that everything is found, and
prints the command to run on the offline machine: the same one, with ``HF_HUB_OFFLINE=1``.
Anything that cannot be fetched stops it with one line.
"""

import shlex
import sys
from pathlib import Path

from huggingface_hub.constants import HF_HUB_CACHE

from data_prep.esc50 import ESC50_URL, download_esc50, has_esc50
from recipes.cli import check_settings, parse_command, preview_settings, run_main
from recipes.offline import DownloadError, download_hub_files, load_pretrained


def _pop_released(argv: list[str]) -> tuple[list[str], list[str], str]:
    rest, released, folder = [], [], "pretrained_models"
    args = iter(argv)
    for arg in args:
        name, equals, value = arg.partition("=")
        if name in ("--released", "--released_folder"):
            value = value if equals else next(args, None)
            if not value:
                sys.exit(f"fetch.py: {name} needs a value")
            if name == "--released":
                released.append(value)
            else:
                folder = value
        else:
            rest.append(arg)
    return rest, released, folder


def fetch_data(settings: dict) -> str | None:
    """Downloads ESC-50 into the YAML's ``data_folder`` when it holds no data set yet."""
    if settings.get("data_folder") is None:
        return None
    folder = Path(str(settings["data_folder"])).expanduser().resolve()
    if has_esc50(folder):
        return f"data: a data set in ESC-50's layout is in {folder}"
    if settings.get("make_synthetic_data"):
        return f"data: nothing to fetch (the recipe writes a synthetic set into {folder})"
    download_esc50(folder, url=str(settings.get("esc50_url") or ESC50_URL))
    return f"data: ESC-50 downloaded into {folder}"


def fetch_backbone(settings: dict) -> str | None:
    """Fetches the backbone's pretrained weights into the YAML's ``pretrained_folder``, as the
    YAML's ``build_embedder`` loads them, then loads them again without network."""
    from recipes.models import build_embedder

    if not (settings.get("pretrained") and settings.get("source") and settings.get("backbone")):
        return None
    backbone, source = str(settings["backbone"]), str(settings["source"])
    cache = settings.get("pretrained_folder")
    cache = None if cache is None else str(cache)

    def load(source, cache_dir):
        return build_embedder(backbone, source=source, pretrained=True, cache_dir=cache_dir)

    load_pretrained(load, source, cache)
    try:
        load_pretrained(load, source, cache, local_only=True)
    except DownloadError as error:
        raise DownloadError(f"the weights of {source} were fetched, but: {error}") from error
    where = "a local folder" if Path(source).is_dir() else Path(cache or HF_HUB_CACHE).resolve()
    return f"backbone: the pretrained weights of {source} are in {where}"


def fetch_released(repo_id: str, folder: str) -> str:
    """Fetches a released model into ``folder`` (``recipes.loading.download_released``'s files
    and cache), then finds it again without network."""
    from recipes.loading import RELEASED_FILES

    optional = ("label_encoder.txt",)
    download_hub_files(repo_id, RELEASED_FILES, folder, optional=optional)
    path = download_hub_files(repo_id, RELEASED_FILES, folder, optional=optional, local_only=True)
    return f"released: {repo_id} is in {path}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    argv, released, released_folder = _pop_released(argv)
    done = []
    if argv:
        hparams_file, _, overrides, _ = parse_command(argv)
        problem = check_settings(hparams_file, overrides)
        if problem:
            sys.exit(f"fetch.py: {problem}")
        settings = preview_settings(hparams_file, overrides)
        if settings is None:
            sys.exit(f"fetch.py: {hparams_file} cannot be read with these overrides")
        done += [fetch_data(settings), fetch_backbone(settings)]
    elif not released:
        sys.exit("fetch.py: give a YAML of hparams/ (and its overrides) and/or --released MODEL_ID")
    done += [fetch_released(repo_id, released_folder) for repo_id in released]
    for line in filter(None, done):
        print(line)
    if argv:
        name = Path(argv[0]).name
        from interpreters.methods import METHODS

        trained = [m.run for m in METHODS.values() if m.run is not None and m.base is None]
        script = next(
            (run.script for run in trained if run.script[6:-3] in name), "train_classifier.py"
        )
        print(
            "All there: on the machine without network run the recipe with the same arguments: "
            f"HF_HUB_OFFLINE=1 python {script} {shlex.join(argv)}"
        )
    return done


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
