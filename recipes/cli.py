"""Command-line handling shared by the entry scripts (SpeechBrain conventions).

``python SCRIPT.py HPARAMS.yaml [--key=value ...] [--overrides_file=FILE.yaml]``: any YAML key can
be overridden on the command line; ``--overrides_file`` reads a YAML file of overrides first
(command-line values win), e.g. ``hparams/quickstart.yaml``.

Before any object of the YAML is built and before anything is written, the settings are checked
(``check_settings``): an override of a key the YAML does not have, a required path left as
``!PLACEHOLDER``, a ``quantile`` outside [0, 1] and a numeric setting out of its range
(``SETTING_RANGES``: ``batch_size`` >= 1, ``number_of_epochs`` >= 1, learning rates > 0, ...)
stop the script with one line naming the key. Then the number of classes of the data is worked
out (``data_prep.datasets.expected_n_classes``) and given to the YAML as ``n_classes``, so the
classifier's head has as many outputs as the data have classes; an ``n_classes`` that differs is
refused with one line, and so is an ``output_folder`` whose ``model.json`` describes another
model (``recipes.runs.rerun_mismatch``). ``run_main`` turns the project's own errors (bad data,
bad run folders, unreadable audio, downloads impossible offline) into one line and a non-zero
exit.

Precision (``resolve_precisions``): ``precision: auto`` (the from-scratch recipes' default, or
``--precision=auto``) trains in bf16 where the device runs it natively (a CUDA GPU with bf16, a
CPU with AVX512-BF16 or AMX) and in fp32 elsewhere; an explicit ``--precision`` wins. The test
stage runs in fp32 unless ``eval_precision`` asks otherwise. Both the request and the resolved
values are logged and written to ``test_metrics.json``.
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


class SettingsError(ValueError):
    """A recipe's command line or YAML settings cannot run (the message says which key and what
    to do); ``run_main`` ends the script with it in one line."""


def _pop_overrides_file(argv: list[str]) -> tuple[list[str], str | None]:
    rest, path = [], None
    args = iter(argv)
    for arg in args:
        if arg.startswith("--overrides_file="):
            path = arg.split("=", 1)[1]
        elif arg == "--overrides_file":
            path = next(args, None)
            if path is None:
                raise SettingsError("--overrides_file needs a path to a YAML file")
        else:
            rest.append(arg)
    return rest, path


def load_hparams(argv: list[str] | None = None) -> tuple[dict, dict, str, dict]:
    """Parses arguments, loads the YAML with overrides and creates the experiment folder.

    Returns
    -------
    hparams, run_opts, hparams_file, overrides
    """
    hparams_file, run_opts, overrides, auto_keys = parse_command(argv)
    sb.utils.distributed.ddp_init_group(run_opts)  # under torchrun; a no-op otherwise
    problem = check_settings(hparams_file, overrides)
    if problem:
        raise SettingsError(problem)
    if run_opts.get("test_only"):
        problem = _test_only_problem(hparams_file, overrides)
        if problem:
            raise SettingsError(problem)
    overrides = _with_data_n_classes(hparams_file, overrides)
    problem = _run_folder_problem(hparams_file, overrides)
    if problem:
        raise SettingsError(problem)
    with open(hparams_file) as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    _keep_entry_script(hparams["output_folder"])
    run_opts, requested = resolve_precisions(run_opts, hparams, auto_keys)
    for key, value in requested.items():  # test_metrics.json records what was asked, too
        hparams[f"{key}_requested"] = value
    logger.info(describe_precisions(run_opts, requested, run_device(run_opts, hparams)))
    warning = slow_bf16_warning(run_opts, hparams)
    if warning:
        logger.warning(warning)
    return hparams, run_opts, hparams_file, overrides


def parse_command(argv: list[str] | None = None) -> tuple[str, object, dict, set[str]]:
    """Splits a recipe's command line: ``(hparams_file, run_opts, overrides, auto_keys)``.

    ``overrides`` merges ``--overrides_file`` and the command line's ``--key=value`` (which win).
    ``--precision=auto`` / ``--eval_precision=auto`` (which SpeechBrain's parser refuses) are
    taken out and named in ``auto_keys``.

    Example
    -------
    >>> file, opts, overrides, auto = parse_command(
    ...     ["hparams/focalnet.yaml", "--quantile=0.8", "--precision=auto", "--device=cpu"])
    >>> file, overrides, sorted(auto), opts.device
    ('hparams/focalnet.yaml', {'quantile': 0.8}, ['precision'], 'cpu')
    """
    argv = sys.argv[1:] if argv is None else argv
    argv, overrides_file = _pop_overrides_file(argv)
    argv, auto_keys = _pop_auto_precisions(argv)
    hparams_file, run_opts, cli_overrides = sb.parse_arguments(argv)
    overrides = {}
    if overrides_file is not None:
        if not os.path.isfile(overrides_file):
            raise SettingsError(f"--overrides_file: {overrides_file} does not exist")
        with open(overrides_file) as handle:
            overrides = yaml.safe_load(handle) or {}
    if cli_overrides:  # command-line values win over the file's
        overrides.update(yaml.safe_load(cli_overrides) or {})
    return hparams_file, run_opts, overrides, auto_keys


PRECISION_KEYS = ("precision", "eval_precision")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def _pop_auto_precisions(argv: list[str]) -> tuple[list[str], set[str]]:
    """``argv`` without ``--precision=auto`` / ``--precision auto`` (and eval_precision's)."""
    rest, auto, index = [], set(), 0
    while index < len(argv):
        name, equals, value = argv[index].partition("=")
        step = 1
        if name.startswith("--") and name[2:] in PRECISION_KEYS:
            if not equals and index + 1 < len(argv):
                value, step = argv[index + 1], 2
            if value == "auto":
                auto.add(name[2:])
                index += step
                continue
        rest.append(argv[index])
        index += 1
    return rest, auto


def run_device(run_opts, hparams: dict) -> str:
    """The device the run will use: ``--device``, else the YAML's, else SpeechBrain's guess."""
    if "device" in run_opts.overridden_args:
        return str(run_opts.device)
    if hparams.get("device"):
        return str(hparams["device"])
    return sb.utils.distributed.infer_device()


def cuda_has_native_bf16(device: str = "cuda") -> bool:
    """Whether the GPU ``device`` computes in bf16 natively (compute capability 8.0 on, ROCm)."""
    if not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return True
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    return torch.cuda.get_device_properties(index).major >= 8


def auto_precision(device: str, cpu_native=None, cuda_native=None) -> str:
    """What ``precision: auto`` runs as on ``device``: bf16 where it is native, else fp32.

    bf16 on a CUDA GPU with bf16 (``cuda_has_native_bf16``) and on a CPU with bf16 instructions,
    AVX512-BF16 or AMX (``cpu_has_native_bf16``); fp32 elsewhere, where bf16 is emulated and
    slower (8x slower than fp32 for a FocalNet training step on an AVX2-only CPU).

    Example
    -------
    >>> auto_precision("cpu", cpu_native=lambda: True), auto_precision("cpu", lambda: False)
    ('bf16', 'fp32')
    >>> auto_precision("cuda:0", cuda_native=lambda device: True)
    'bf16'
    >>> auto_precision("cuda:1", cuda_native=lambda device: device != "cuda:1")
    'fp32'
    >>> auto_precision("mps")
    'fp32'
    """
    cpu_native = cpu_has_native_bf16 if cpu_native is None else cpu_native
    cuda_native = cuda_has_native_bf16 if cuda_native is None else cuda_native
    if device.startswith("cuda"):
        return "bf16" if cuda_native(device) else "fp32"
    if device.startswith("cpu"):
        return "bf16" if cpu_native() else "fp32"  # None: torch cannot tell
    return "fp32"


def requested_precisions(run_opts, hparams: dict, auto_keys=()) -> dict:
    """What the command asks for, per key of ``PRECISION_KEYS``: the command line's value, else
    the YAML's, else fp32 (evaluation too: it follows ``--eval_precision`` only).

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> opts = RunOptions.from_dictionary({"precision": "bf16"})
    >>> requested_precisions(opts, {"precision": "auto"})
    {'precision': 'bf16', 'eval_precision': 'fp32'}
    >>> requested_precisions(RunOptions(), {"precision": "auto"}, auto_keys={"eval_precision"})
    {'precision': 'auto', 'eval_precision': 'auto'}
    """
    requested = {}
    for key in PRECISION_KEYS:
        if key in auto_keys:
            requested[key] = "auto"
        elif key in run_opts.overridden_args:
            requested[key] = str(run_opts[key])
        else:
            requested[key] = str(hparams.get(key) or "fp32")
    return requested


def resolve_precisions(run_opts, hparams: dict, auto_keys=(), cpu_native=None, cuda_native=None):
    """``(run_opts, requested)``: ``run_opts`` with both precisions set to what will run.

    ``requested`` (``requested_precisions``) is what the command asked for; each ``auto`` becomes
    ``auto_precision`` of the run's device. An explicit ``fp32`` / ``bf16`` / ``fp16`` wins; the
    evaluation runs in fp32 unless ``eval_precision`` asks otherwise: bf16 moves the test
    metrics (FA by about 10 %). Both keys are marked as given, so that SpeechBrain uses these
    values and not the YAML's ``auto``.

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> cpu = RunOptions.from_dictionary({"device": "cpu"})
    >>> opts, asked = resolve_precisions(cpu, {"precision": "auto"}, cpu_native=lambda: True)
    >>> opts.precision, opts.eval_precision, asked["precision"]
    ('bf16', 'fp32', 'auto')
    >>> resolve_precisions(cpu, {"precision": "auto"}, cpu_native=lambda: False)[0].precision
    'fp32'
    """
    requested = requested_precisions(run_opts, hparams, auto_keys)
    device = run_device(run_opts, hparams)
    resolved = {
        key: auto_precision(device, cpu_native, cuda_native) if value == "auto" else value
        for key, value in requested.items()
    }
    run_opts = dataclasses.replace(
        run_opts, **resolved, overridden_args={*run_opts.overridden_args, *PRECISION_KEYS}
    )
    return run_opts, requested


def describe_precisions(run_opts, requested: dict, device: str) -> str:
    """The log line of the precisions that run, and what was asked.

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> opts = RunOptions(precision="bf16", eval_precision="fp32")
    >>> print(describe_precisions(opts, {"precision": "auto", "eval_precision": "fp32"}, "cpu"))
    Training in bf16 (precision: auto, on cpu: bf16 is native here), evaluating in fp32 (eval_precision: fp32); --precision / --eval_precision override
    """  # noqa: E501
    parts = []
    for key, verb in zip(PRECISION_KEYS, ("Training", "evaluating"), strict=True):
        ran, asked = run_opts[key], requested[key]
        why = f"{key}: {asked}"
        if asked == "auto":
            native = "bf16 is native here" if ran == "bf16" else "no native bf16 here"
            why += f", on {device}: {native}"
        parts.append(f"{verb} in {ran} ({why})")
    return ", ".join(parts) + "; --precision / --eval_precision override"


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); None if torch cannot tell.

    ``torch.cpu``'s checks of those instructions; where this torch lacks them, oneDNN's
    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` (which also holds on AVX-512 CPUs without
    AVX512-BF16, where oneDNN emulates bf16 with AVX-512 instructions).
    """
    checks = [getattr(torch.cpu, name, None) for name in BF16_CPU_CHECKS]
    checks = [check for check in checks if check is not None]
    if not checks:
        mkldnn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(mkldnn()) if mkldnn is not None else None
    return any(check() for check in checks)


BF16_CPU_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def slow_bf16_warning(run_opts, hparams: dict, native=cpu_has_native_bf16) -> str | None:
    """The warning for bf16 autocast on a CPU without bf16 instructions, else None.

    On such a CPU bf16 is emulated and may run slower than fp32 (8x for a FocalNet training step
    on an AVX2-only CPU). ``precision: auto`` (the from-scratch recipes' default) never picks
    bf16 there, so this warns about an explicit ``--precision=bf16`` / ``--eval_precision=bf16``.

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
    without a value, that ``quantile`` (when the YAML has one) lies in [0, 1], that the
    numeric settings of ``SETTING_RANGES`` lie in their ranges and that ``precision`` /
    ``eval_precision`` are among ``PRECISIONS``. Returns None when all is well.

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
    >>> print(check_settings("hparams/focalnet.yaml", {"data_folder": "x", "batch_size": 0}))
    batch_size is 0: give an integer >= 1 (clips per training batch)
    >>> print(check_settings("hparams/focalnet.yaml", {"data_folder": "x", "lr": -1e-3}))
    lr is -0.001: give a number > 0 (the learning rate)
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
    resolved = None  # the YAML with its references resolved, read when a value is a !ref
    for key, rule in SETTING_RANGES.items():
        if key not in raw:
            continue
        value = overrides.get(key, raw[key])
        if value is None and raw[key] is None:  # null where the YAML gives null a meaning
            continue
        if isinstance(value, ruamel.yaml.comments.TaggedScalar):
            resolved = _preview(hparams_file, overrides) if resolved is None else resolved
            value = (resolved or {}).get(key)
            if value is None or isinstance(value, ruamel.yaml.comments.TaggedScalar):
                continue
        problem = out_of_range(key, value, *rule)
        if problem:
            return problem
    if "warmup_epochs" in raw and "number_of_epochs" in raw:
        warmup = overrides.get("warmup_epochs", raw["warmup_epochs"])
        epochs = overrides.get("number_of_epochs", raw["number_of_epochs"])
        if _number(warmup) is not None and _number(epochs) is not None and warmup >= epochs:
            return (
                f"warmup_epochs is {warmup} but number_of_epochs is {epochs}: give a "
                f"--warmup_epochs below {epochs} (e.g. --warmup_epochs=0)"
            )
    for key in PRECISION_KEYS:
        value = overrides.get(key, raw.get(key))
        if value is not None and str(value) not in PRECISIONS:
            return f"{key} is {value} in {hparams_file}: give one of {', '.join(PRECISIONS)}"
    return None


# Numeric settings checked at start-up, when the YAML has them: (integer, lowest value, whether
# the lowest value itself is allowed, highest allowed value or None, what the setting is).
SETTING_RANGES = {
    "batch_size": (True, 1, True, None, "clips per training batch"),
    "number_of_epochs": (True, 1, True, None, "training epochs"),
    "lr": (False, 0, False, None, "the learning rate"),
    "base_lr": (False, 0, False, None, "the cyclic schedule's lowest learning rate"),
    "max_lr": (False, 0, False, None, "the highest learning rate"),
    "step_size": (True, 1, True, None, "training steps per half cycle of the learning rate"),
    "warmup_epochs": (False, 0, True, None, "epochs of learning-rate warm-up"),
    "weight_decay": (False, 0, True, None, "the optimiser's weight decay"),
    "max_grad_norm": (False, 0, False, None, "the gradient norm clipping threshold"),
    "num_workers": (True, 0, True, None, "data loading processes; 0: the main process"),
    "n_interpretations": (True, 0, True, None, "test clips written as PNG + WAV"),
    "sample_rate": (True, 1, True, None, "samples per second"),
    "clip_seconds": (False, 0, False, None, "the length of a clip"),
    "head_neurons": (True, 1, True, None, "the head's embedding size"),
    "head_bn_momentum": (False, 0, True, 1, "the head's BatchNorm momentum"),
    "codebook_size": (True, 1, True, None, "PIQ's codebook entries"),
    "interpreter_width": (True, 1, True, None, "PIQ's decoder channels"),
    "decoder_width": (True, 1, True, None, "L-MAC's decoder channels"),
    "mixup_alpha": (False, 0, True, None, "mixup's Beta parameter; 0: no mixup"),
    "beta": (False, 0, True, None, "the weight of the commitment loss"),
    "l_in_weight": (False, 0, True, None, "a loss weight"),
    "l_out_weight": (False, 0, True, None, "a loss weight"),
    "l1_weight": (False, 0, True, None, "a loss weight"),
    "score_scale": (False, 0, False, None, "the scale of the cosine scores"),
    "mask_threshold": (False, 0, True, 1, "the share of a clip's maximum a target cell exceeds"),
    "synthetic_n_classes": (True, 2, True, None, "classes of the synthetic data set"),
    "synthetic_clips_per_class_per_fold": (True, 1, True, None, "clips of the synthetic set"),
}


def _number(value) -> float | None:
    """``value`` when it is a plain int or float (not a bool, not a YAML reference), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def out_of_range(key, value, integer, lowest, lowest_allowed, highest, what) -> str | None:
    """The one-line refusal of ``value`` for ``key`` outside its range (``SETTING_RANGES``).

    Example
    -------
    >>> print(out_of_range("number_of_epochs", -1, *SETTING_RANGES["number_of_epochs"]))
    number_of_epochs is -1: give an integer >= 1 (training epochs)
    >>> out_of_range("lr", "1e-3", *SETTING_RANGES["lr"]) is None  # --lr=1e-3 reads as text
    True
    >>> print(out_of_range("head_bn_momentum", 2, *SETTING_RANGES["head_bn_momentum"]))
    head_bn_momentum is 2: give a number in [0, 1] (the head's BatchNorm momentum)
    """
    kind = "an integer" if integer else "a number"
    if highest is not None:
        bounds = f"in {'[' if lowest_allowed else '('}{lowest:g}, {highest:g}]"
    else:
        bounds = f"{'>=' if lowest_allowed else '>'} {lowest:g}"
    try:
        if isinstance(value, bool) or (integer and not isinstance(value, int)):
            raise TypeError(value)
        number = float(value)
        valid = (number >= lowest if lowest_allowed else number > lowest) and (
            highest is None or number <= highest
        )
    except (TypeError, ValueError):
        valid = False
    return None if valid else f"{key} is {value}: give {kind} {bounds} ({what})"


def run_main(main, argv=None):
    """Runs an entry script's ``main``; the project's own errors end it with one line, exit 1.

    First tells glibc's malloc to keep freed memory for reuse (``recipes.allocator``).

    ``ESC50Error`` (data), ``RunFolderError`` (run folders), ``AudioReadError`` (audio files),
    ``SettingsError`` (the command line and YAML, ``load_hparams``) and ``DownloadError``
    (weights neither cached nor downloadable, ``recipes.offline``) carry
    messages written for the user: a traceback would bury them.
    """
    from data_prep.audio import AudioReadError
    from recipes.allocator import keep_freed_memory
    from recipes.offline import DownloadError
    from recipes.runs import RunFolderError

    keep_freed_memory()  # large activations reused, not faulted in afresh (recipes/allocator.py)
    try:
        return main(argv)
    except (ESC50Error, RunFolderError, AudioReadError, DownloadError, SettingsError) as error:
        sys.exit(f"{_script()}: {error}")


def preview_settings(hparams_file, overrides: dict):
    """The YAML's top-level keys with references and overrides resolved, no object built (None
    when the YAML cannot be resolved); ``fetch.py`` reads what to fetch from it."""
    return _preview(hparams_file, overrides)


def _run_folder_problem(hparams_file, overrides: dict) -> str | None:
    """Why the command cannot write into its ``output_folder`` (``recipes.runs.rerun_mismatch``:
    the folder's model.json describes another model), or None."""
    from recipes.runs import rerun_mismatch

    preview = _preview(hparams_file, overrides)
    if not preview or "output_folder" not in preview:
        return None
    return rerun_mismatch(str(preview["output_folder"]), dict(preview))


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

    A ``SettingsError`` when the YAML (or the command line) gives another number, an
    ``ESC50Error`` when the data cannot be read.
    """
    preview = _preview(hparams_file, overrides)
    folds = ("train_folds", "valid_folds", "test_folds")
    if preview and all(key in preview for key in folds):
        check_folds(*(preview[key] for key in folds))  # ESC50Error: one line from run_main
    if not preview or "n_classes" not in preview or "data_folder" not in preview:
        return overrides
    n_data, where = expected_n_classes(
        str(preview["data_folder"]),
        subset=str(preview.get("subset", "esc50")),
        make_synthetic=bool(preview.get("make_synthetic_data", False)),
        synthetic_n_classes=int(preview.get("synthetic_n_classes", 10)),
    )
    mismatch = n_classes_mismatch(preview["n_classes"], n_data, where)
    if mismatch:
        raise SettingsError(mismatch)
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
