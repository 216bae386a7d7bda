"""Command-line handling shared by the entry scripts (SpeechBrain conventions).

``python SCRIPT.py HPARAMS.yaml [--key=value ...] [--overrides_file=FILE.yaml]``: any YAML key can
be overridden on the command line; ``--overrides_file`` reads a YAML file of overrides first
(command-line values win), e.g. ``hparams/quickstart.yaml``.

Before any object of the YAML is built and before anything is written, the settings are checked
(``check_settings``): an override of a key the YAML does not have, a required path left as
``!PLACEHOLDER`` and a ``quantile`` outside [0, 1] stop the script with one line naming the key.
Then the number of classes of the data is worked out (``data_prep.datasets.expected_n_classes``)
and given to the YAML as ``n_classes``, so the classifier's head has as many outputs as the data
have classes; an ``n_classes`` that differs is refused with one line. ``run_main`` turns the
project's own errors (bad data, bad run folders) into one line and a non-zero exit.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import shutil
import sys

import ruamel.yaml
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from data_prep.datasets import expected_n_classes, n_classes_mismatch
from data_prep.esc50 import ESC50Error, check_folds

logger = logging.getLogger(__name__)


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
    problem = check_settings(hparams_file, overrides)
    if problem:
        sys.exit(f"{_script()}: {problem}")
    if run_opts.get("test_only"):
        problem = _test_only_problem(hparams_file, overrides)
        if problem:
            sys.exit(f"{_script()}: {problem}")
    overrides = _with_data_n_classes(hparams_file, overrides)
    with open(hparams_file) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    _keep_entry_script(hparams["output_folder"])
    run_opts = evaluate_in_training_precision(run_opts, hparams)
    warning = slow_bf16_warning(run_opts, hparams)
    if warning:
        logger.warning(warning)
    return hparams, run_opts, hparams_file, overrides


def evaluate_in_training_precision(run_opts, hparams: dict):
    """``run_opts`` with ``eval_precision`` set to the training precision unless it was given.

    SpeechBrain evaluates in fp32 unless ``--eval_precision`` says otherwise, so
    ``--precision=bf16`` alone would leave the masks and metrics of the test stage in fp32. Here
    ``--precision`` covers both; ``--eval_precision=fp32`` (command line or YAML) still wins.

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> bf16 = RunOptions.from_dictionary({"precision": "bf16"})
    >>> evaluate_in_training_precision(bf16, {}).eval_precision
    'bf16'
    >>> given = RunOptions.from_dictionary({"precision": "bf16", "eval_precision": "fp32"})
    >>> evaluate_in_training_precision(given, {}).eval_precision
    'fp32'
    """
    overridden = run_opts.overridden_args
    if "eval_precision" in overridden or "eval_precision" in hparams:
        return run_opts
    precision = run_opts.precision if "precision" in overridden else hparams.get("precision")
    if precision in (None, "fp32"):
        return run_opts
    logger.info("Evaluating in the training precision (%s); --eval_precision overrides", precision)
    return dataclasses.replace(
        run_opts, eval_precision=precision, overridden_args={*overridden, "eval_precision"}
    )


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); None if torch cannot tell."""
    checks = [getattr(torch.cpu, name, None) for name in BF16_CPU_CHECKS]
    checks = [check for check in checks if check is not None]
    if not checks:
        return None
    return any(check() for check in checks)


BF16_CPU_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def slow_bf16_warning(run_opts, hparams: dict, native=cpu_has_native_bf16) -> str | None:
    """The warning for bf16 autocast on a CPU without bf16 instructions, else None.

    On such a CPU bf16 is emulated and may run slower than fp32; the recipes that default to bf16
    (``hparams/esc10_focalnet.yaml``) were measured on a CPU with AVX512-BF16.

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> opts = RunOptions.from_dictionary({"device": "cpu"})
    >>> print(slow_bf16_warning(opts, {"precision": "bf16"}, native=lambda: False))
    precision bf16 on a CPU without bf16 instructions (AVX512-BF16 or AMX): autocast may run slower than fp32 here; give --precision=fp32 (benchmarks/profile_training.py measures both)
    >>> slow_bf16_warning(opts, {"precision": "bf16"}, native=lambda: True) is None
    True
    >>> slow_bf16_warning(opts, {"precision": "fp32"}, native=lambda: False) is None
    True
    """  # noqa: E501
    overridden = run_opts.overridden_args
    device = run_opts.device if "device" in overridden else hparams.get("device")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not str(device).startswith("cpu"):
        return None
    precisions = {
        run_opts[key] if key in overridden else hparams.get(key, "fp32")
        for key in ("precision", "eval_precision")
    }
    if "bf16" not in precisions or native() is not False:
        return None
    return (
        "precision bf16 on a CPU without bf16 instructions (AVX512-BF16 or AMX): autocast may "
        "run slower than fp32 here; give --precision=fp32 (benchmarks/profile_training.py "
        "measures both)"
    )


def _script() -> str:
    return os.path.basename(sys.argv[0]) or "recipe"


def check_settings(hparams_file, overrides: dict) -> str | None:
    """What is wrong with a YAML file and its overrides, in one line, before anything is built.

    Checks that every override names a key of the YAML, that no ``!PLACEHOLDER`` is left
    without a value, and that ``quantile`` (when the YAML has one) lies in [0, 1]. Returns
    None when all is well.

    Example
    -------
    >>> check_settings("hparams/focalnet.yaml", {"data_folder": "x"}) is None
    True
    >>> print(check_settings("hparams/focalnet.yaml", {"data_folder": "x", "quantille": 0.5}))
    hparams/focalnet.yaml has no key 'quantille' (did you mean 'quantile'?): check the spelling of --quantille
    >>> print(check_settings("hparams/focalnet.yaml", {}))
    data_folder is required: give --data_folder=PATH (a !PLACEHOLDER in hparams/focalnet.yaml)
    >>> print(check_settings("hparams/focalnet.yaml", {"data_folder": "x", "quantile": 1.5}))
    quantile is 1.5: give a value in [0, 1] (the mask keeps the top 1 - q share of the cells)
    """  # noqa: E501
    if not os.path.isfile(hparams_file):
        return f"{hparams_file} does not exist: give the path of a YAML file of hparams/"
    with open(hparams_file) as handle:
        raw = ruamel.yaml.YAML().load(handle) or {}
    for key in overrides:
        if key not in raw:
            close = difflib.get_close_matches(str(key), [str(k) for k in raw], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"{hparams_file} has no key {key!r}{hint}: check the spelling of --{key}"
    for key, value in raw.items():
        tag = getattr(getattr(value, "tag", None), "value", None)
        if tag == "!PLACEHOLDER" and overrides.get(key) is None:
            return f"{key} is required: give --{key}=PATH (a !PLACEHOLDER in {hparams_file})"
    quantile = overrides.get("quantile", raw.get("quantile"))
    if quantile is not None and not isinstance(quantile, ruamel.yaml.comments.TaggedScalar):
        try:
            valid = 0.0 <= float(quantile) <= 1.0
        except (TypeError, ValueError):
            valid = False
        if not valid:
            return (
                f"quantile is {quantile}: give a value in [0, 1] (the mask keeps the top 1 - q "
                "share of the cells)"
            )
    return None


def run_main(main, argv=None):
    """Runs an entry script's ``main``; the project's own errors end it with one line, exit 1.

    ``ESC50Error`` (data), ``RunFolderError`` (run folders) and ``AudioReadError`` (audio files)
    carry messages written for the user: a traceback would bury them.
    """
    from data_prep.audio import AudioReadError
    from recipes.runs import RunFolderError

    try:
        return main(argv)
    except (ESC50Error, RunFolderError, AudioReadError) as error:
        sys.exit(f"{_script()}: {error}")


def _preview(hparams_file, overrides: dict):
    """The YAML's keys with references and overrides resolved, no object built (None when the
    YAML cannot be resolved yet: ``load_hyperpyyaml`` then reports why)."""
    try:
        with open(hparams_file) as handle:
            stream = resolve_references(handle, overrides)
        return ruamel.yaml.YAML().load(stream)
    except Exception:  # a placeholder left unset, a bad reference: reported by the real load
        return None


def _test_only_problem(hparams_file, overrides: dict) -> str | None:
    """Why ``--test_only`` cannot run (no checkpoint in the run's save folder), or None.

    Without this check SpeechBrain would evaluate freshly initialised weights and exit 0.
    """
    preview = _preview(hparams_file, overrides)
    if not preview or "save_folder" not in preview:
        return None  # the real load reports what is wrong with the YAML
    save_folder = str(preview["save_folder"])
    if os.path.isdir(save_folder) and any(
        os.path.isfile(os.path.join(save_folder, name, "CKPT.yaml"))
        for name in os.listdir(save_folder)
        if name.startswith("CKPT+")
    ):
        return None
    return (
        f"--test_only evaluates a finished run, but {save_folder} holds no checkpoint: give the "
        "output_folder of a run (--output_folder=...), or train without --test_only"
    )


def _with_data_n_classes(hparams_file, overrides: dict) -> dict:
    """``overrides`` with ``n_classes`` set to the number of classes of the recipe's data.

    Exits with one line when the YAML (or the command line) gives another number, or when the
    data cannot be read.
    """
    preview = _preview(hparams_file, overrides)
    script = _script()
    folds = ("train_folds", "valid_folds", "test_folds")
    if preview and all(key in preview for key in folds):
        try:
            check_folds(*(preview[key] for key in folds))
        except ESC50Error as error:
            sys.exit(f"{script}: {error}")
    if not preview or "n_classes" not in preview or "data_folder" not in preview:
        return overrides
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
