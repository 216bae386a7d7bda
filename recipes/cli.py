"""Command-line handling shared by the entry scripts (SpeechBrain conventions).

``python SCRIPT.py HPARAMS.yaml [--key=value ...] [--overrides_file=FILE.yaml]``: any YAML key can
be overridden on the command line; ``--overrides_file`` reads a YAML file of overrides first
(command-line values win), e.g. ``hparams/quickstart.yaml``.

Before any object of the YAML is built, the number of classes of the data is worked out
(``data_prep.datasets.expected_n_classes``) and given to the YAML as ``n_classes``, so the
classifier's head has as many outputs as the data have classes; an ``n_classes`` that differs is
refused with one line.
"""

from __future__ import annotations

import os
import shutil
import sys

import ruamel.yaml
import speechbrain as sb
import yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from data_prep.datasets import expected_n_classes, n_classes_mismatch
from data_prep.esc50 import ESC50Error


def _pop_overrides_file(argv: list[str]) -> tuple[list[str], str | None]:
    rest, path = [], None
    args = iter(argv)
    for arg in args:
        if arg.startswith("--overrides_file="):
            path = arg.split("=", 1)[1]
        elif arg == "--overrides_file":
            path = next(args, None)
            if path is None:
                sys.exit("--overrides_file needs a path to a YAML file")
        else:
            rest.append(arg)
    return rest, path


def load_hparams(argv: list[str] | None = None) -> tuple[dict, dict, str, dict]:
    """Parses arguments, loads the YAML with overrides and creates the experiment folder.

    Returns
    -------
    hparams, run_opts, hparams_file, overrides
    """
    argv = sys.argv[1:] if argv is None else argv
    argv, overrides_file = _pop_overrides_file(argv)
    hparams_file, run_opts, cli_overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)  # under torchrun; a no-op otherwise
    overrides = {}
    if overrides_file is not None:
        if not os.path.isfile(overrides_file):
            sys.exit(f"--overrides_file: {overrides_file} does not exist")
        with open(overrides_file) as handle:
            overrides = yaml.safe_load(handle) or {}
    if cli_overrides:  # command-line values win over the file's
        overrides.update(yaml.safe_load(cli_overrides) or {})
    overrides = _with_data_n_classes(hparams_file, overrides)
    with open(hparams_file) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    _keep_entry_script(hparams["output_folder"])
    return hparams, run_opts, hparams_file, overrides


def _preview(hparams_file, overrides: dict):
    """The YAML's keys with references and overrides resolved, no object built (None when the
    YAML cannot be resolved yet: ``load_hyperpyyaml`` then reports why)."""
    try:
        with open(hparams_file) as handle:
            stream = resolve_references(handle, overrides)
        return ruamel.yaml.YAML().load(stream)
    except Exception:  # a placeholder left unset, a bad reference: reported by the real load
        return None


def _with_data_n_classes(hparams_file, overrides: dict) -> dict:
    """``overrides`` with ``n_classes`` set to the number of classes of the recipe's data.

    Exits with one line when the YAML (or the command line) gives another number, or when the
    data cannot be read.
    """
    preview = _preview(hparams_file, overrides)
    if not preview or "n_classes" not in preview or "data_folder" not in preview:
        return overrides
    script = os.path.basename(sys.argv[0]) or "recipe"
    try:
        n_data, where = expected_n_classes(
            str(preview["data_folder"]),
            subset=str(preview.get("subset", "esc50")),
            make_synthetic=bool(preview.get("make_synthetic_data", False)),
            synthetic_n_classes=int(preview.get("synthetic_n_classes", 10)),
        )
    except ESC50Error as error:
        sys.exit(f"{script}: {error}")
    mismatch = n_classes_mismatch(preview["n_classes"], n_data, where)
    if mismatch:
        sys.exit(f"{script}: {mismatch}")
    return {**overrides, "n_classes": n_data}


def _keep_entry_script(folder) -> None:
    """Copies the entry script that ran into the run folder, in place of this module.

    SpeechBrain's ``create_experiment_directory`` copies the module that calls it, which is this
    one; the script the user ran (``train_classifier.py``, ``train_piq.py``) is what belongs there.
    """
    script = os.path.realpath(sys.argv[0])
    if not sb.utils.distributed.if_main_process() or not script.endswith(".py"):
        return
    if os.path.isfile(script) and os.path.realpath(__file__) != script:
        shutil.copy(script, folder)
        stray = os.path.join(folder, os.path.basename(__file__))
        if os.path.isfile(stray):
            os.remove(stray)
