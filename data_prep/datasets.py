"""From a data folder to the three SpeechBrain data sets, shared by every training entry point.

Order of work: write a synthetic set when asked and the folder holds none, download / verify ESC-50
and write the manifests and the label map (``data_prep.esc50.prepare_esc50``, on the main process
only), then build the data sets (``data_prep.audio.make_datasets``). The number of classes, and so
the classifier's output size, follows from the data: ``expected_n_classes`` tells it before
anything is prepared, ``n_classes_mismatch`` words the refusal of a YAML value that differs.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from speechbrain.utils.distributed import run_on_main

from data_prep.audio import SAMPLE_RATE, make_datasets
from data_prep.esc50 import (
    SUBSETS,
    ESC50Error,
    data_label_map,
    has_esc50,
    prepare_esc50,
    read_labels,
)
from data_prep.synthetic import generate_synthetic_esc50

logger = logging.getLogger(__name__)


DOWNLOADED_N_CLASSES = {"esc50": 50, "esc10": 10}  # what a fresh download of each subset holds


def n_classes_mismatch(n_classes, n_data: int, where: str) -> str | None:
    """The one-line message when ``n_classes`` (a YAML key; None: from the data) differs from the
    ``n_data`` classes of the data, else None.

    Example
    -------
    >>> n_classes_mismatch(None, 10, "subset esc10 of data/ESC-10") is None
    True
    >>> print(n_classes_mismatch(50, 10, "subset esc10 of data/ESC-10"))
    n_classes is 50 but subset esc10 of data/ESC-10 has 10 classes: drop --n_classes (it follows from the data) or set --n_classes=10
    """  # noqa: E501
    if n_classes is None or int(n_classes) == n_data:
        return None
    return (
        f"n_classes is {n_classes} but {where} has {n_data} classes: drop --n_classes (it "
        f"follows from the data) or set --n_classes={n_data}"
    )


def expected_n_classes(
    data_folder, subset: str = "esc50", make_synthetic: bool = False, synthetic_n_classes: int = 10
) -> tuple[int, str]:
    """How many classes the data of a recipe will have, before anything is prepared.

    From the CSV of ``data_folder`` when it holds one; else from what will be written there
    (``synthetic_n_classes`` for a synthetic set, 50 or 10 for a download of ESC-50).

    Returns
    -------
    n_classes : int
    where : str
        The data described in words, for messages.
    """
    if has_esc50(data_folder):
        return len(data_label_map(data_folder, subset)), f"subset {subset} of {data_folder}"
    if make_synthetic:
        if subset != "esc50":
            raise ESC50Error(
                f"the synthetic data set has no ESC-10 rows: use subset: esc50 with "
                f"make_synthetic_data (data folder {data_folder})"
            )
        return int(synthetic_n_classes), f"the synthetic data set to be written in {data_folder}"
    if subset not in DOWNLOADED_N_CLASSES:
        raise ESC50Error(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    return DOWNLOADED_N_CLASSES[subset], f"subset {subset} of ESC-50 (to be downloaded)"


def writable_cache_folder(cache_folder, fallback):
    """``cache_folder``, or ``fallback`` (with a logged message) when it cannot be written, e.g.
    under a read-only data folder; None stays None (no cache)."""
    if cache_folder is None:
        return None
    try:
        Path(cache_folder).mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=cache_folder, prefix=".write-test-")
        probe.close()
        return cache_folder
    except OSError as error:
        logger.warning(
            "The resample cache %s cannot be written (%s): caching in %s instead (set "
            "resample_cache to choose another folder, or null for no cache)",
            cache_folder,
            error.strerror or error,
            fallback,
        )
        Path(fallback).mkdir(parents=True, exist_ok=True)
        return fallback


def prepare_datasets(
    data_folder,
    manifest_folder,
    train_folds,
    valid_folds,
    test_folds,
    n_classes: int | None,
    url: str,
    download: bool = True,
    sample_rate: int = SAMPLE_RATE,
    duration: float = 5.0,
    cache_folder=None,
    make_synthetic: bool = False,
    synthetic_n_classes: int = 10,
    synthetic_clips_per_class_per_fold: int = 8,
    seed: int = 0,
    subset: str = "esc50",
) -> tuple[dict, list[dict]]:
    """Prepares the data and returns ``(datasets, labels)``.

    ``datasets`` maps "train", "valid", "test" to ``DynamicItemDataset`` objects providing
    ``id``, ``signal``, ``label``, ``target`` and ``class_name``; ``labels`` is the label map
    (``data_prep.esc50.label_map``). ``n_classes`` (None: whatever the data hold) must equal the
    number of labels, else ESC50Error.
    """
    if make_synthetic and not has_esc50(data_folder):
        logger.info("Writing a synthetic ESC-50-layout data set into %s", data_folder)
        run_on_main(
            generate_synthetic_esc50,
            kwargs={
                "folder": data_folder,
                "n_classes": synthetic_n_classes,
                "clips_per_class_per_fold": synthetic_clips_per_class_per_fold,
                "seed": seed,
            },
        )
    run_on_main(
        prepare_esc50,
        kwargs={
            "data_folder": data_folder,
            "save_folder": manifest_folder,
            "train_folds": train_folds,
            "valid_folds": valid_folds,
            "test_folds": test_folds,
            "url": url,
            "download": download,
            "subset": subset,
        },
    )
    # Every process reads the manifests the main process wrote (prepare skips: same options).
    manifests = prepare_esc50(
        data_folder,
        manifest_folder,
        train_folds,
        valid_folds,
        test_folds,
        url,
        download=False,
        subset=subset,
    )
    labels = read_labels(manifest_folder)
    cache_folder = writable_cache_folder(cache_folder, Path(manifest_folder).parent / "cache_16k")
    mismatch = n_classes_mismatch(n_classes, len(labels), f"subset {subset} of {data_folder}")
    if mismatch:
        raise ESC50Error(mismatch)
    datasets = make_datasets(
        manifests,
        data_folder,
        sample_rate=sample_rate,
        duration=duration,
        cache_folder=cache_folder,
    )
    return datasets, labels


def datasets_from_hparams(hparams: dict) -> tuple[dict, list[dict]]:
    """``prepare_datasets`` with the arguments read from a recipe's hyperparameters.

    Every training entry point calls this, so the YAML keys it reads (``data_folder``,
    ``manifest_folder``, ``train_folds``, ``valid_folds``, ``test_folds``, ``n_classes``,
    ``esc50_url``, ``download``, ``sample_rate``, ``clip_seconds``, ``resample_cache``,
    ``make_synthetic_data``, ``synthetic_n_classes``, ``synthetic_clips_per_class_per_fold``,
    ``seed``, ``subset``) mean the same in every recipe. Returns ``(datasets, labels)``.
    """
    return prepare_datasets(
        data_folder=hparams["data_folder"],
        manifest_folder=hparams["manifest_folder"],
        train_folds=hparams["train_folds"],
        valid_folds=hparams["valid_folds"],
        test_folds=hparams["test_folds"],
        n_classes=hparams["n_classes"],
        url=hparams["esc50_url"],
        download=hparams["download"],
        sample_rate=hparams["sample_rate"],
        duration=hparams["clip_seconds"],
        cache_folder=hparams["resample_cache"],
        make_synthetic=hparams["make_synthetic_data"],
        synthetic_n_classes=hparams["synthetic_n_classes"],
        synthetic_clips_per_class_per_fold=hparams["synthetic_clips_per_class_per_fold"],
        seed=hparams["seed"],
        subset=hparams.get("subset", "esc50"),
    )
