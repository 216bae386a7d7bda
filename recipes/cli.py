"""Command-line handling shared by the entry scripts (SpeechBrain conventions).

``python SCRIPT.py HPARAMS.yaml [--key=value ...] [--overrides_file=FILE.yaml]``: any YAML key can
be overridden on the command line; ``--overrides_file`` reads a YAML file of overrides first
(command-line values win), e.g. ``hparams/quickstart.yaml``.
"""

from __future__ import annotations

import os
import shutil
import sys

import speechbrain as sb
import yaml
from hyperpyyaml import load_hyperpyyaml


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
    with open(hparams_file) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    _keep_entry_script(hparams["output_folder"])
    return hparams, run_opts, hparams_file, overrides


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
