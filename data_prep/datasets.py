"""From a data folder to the three SpeechBrain data sets, shared by every training entry point.

Order of work: write a synthetic set when asked and the folder holds none, download / verify ESC-50
and write the manifests (``data_prep.esc50.prepare_esc50``, on the main process only), then build
the data sets (``data_prep.audio.make_datasets``) and the class names by ESC-50 ``target``.
"""

from __future__ import annotations

import json
import logging

from speechbrain.utils.distributed import run_on_main

from data_prep.audio import make_datasets
from data_prep.esc50 import ESC50Error, has_esc50, prepare_esc50
from data_prep.synthetic import generate_synthetic_esc50

logger = logging.getLogger(__name__)


def class_names_from_manifests(manifests: dict, n_classes: int) -> list[str]:
    """Class names indexed by ESC-50 ``target`` (the label id), read from the manifests.

    Raises ESC50Error when a target does not fit ``n_classes`` (the YAML key of that name).
    Classes that appear in no manifest are named by their id.
    """
    names = {}
    for path in manifests.values():
        with open(path) as handle:
            for entry in json.load(handle).values():
                names[int(entry["target"])] = entry["class_name"]
    too_big = sorted(t for t in names if not 0 <= t < n_classes)
    if too_big:
        raise ESC50Error(
            f"The manifests hold targets {too_big[:5]} but n_classes is {n_classes}: set "
            f"--n_classes={max(names) + 1} (or check the data folder)."
        )
    missing = [t for t in range(n_classes) if t not in names]
    if missing:
        logger.warning("No clip of classes %s in any split; n_classes is %d", missing, n_classes)
    return [names.get(t, str(t)) for t in range(n_classes)]


def prepare_datasets(
    data_folder,
    manifest_folder,
    train_folds,
    valid_folds,
    test_folds,
    n_classes: int,
    url: str,
    download: bool = True,
    sample_rate: int = 16000,
    duration: float = 5.0,
    cache_folder=None,
    make_synthetic: bool = False,
    synthetic_n_classes: int = 10,
    synthetic_clips_per_class_per_fold: int = 8,
    seed: int = 0,
) -> tuple[dict, list[str]]:
    """Prepares the data and returns ``(datasets, class_names)``.

    ``datasets`` maps "train", "valid", "test" to ``DynamicItemDataset`` objects providing
    ``id``, ``signal``, ``target`` and ``class_name``.
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
        },
    )
    # Every process reads the manifests the main process wrote (prepare skips: same options).
    manifests = prepare_esc50(
        data_folder, manifest_folder, train_folds, valid_folds, test_folds, url, download=False
    )
    class_names = class_names_from_manifests(manifests, n_classes)
    datasets = make_datasets(
        manifests,
        data_folder,
        sample_rate=sample_rate,
        duration=duration,
        cache_folder=cache_folder,
    )
    return datasets, class_names


def datasets_from_hparams(hparams: dict) -> tuple[dict, list[str]]:
    """``prepare_datasets`` with the arguments read from a recipe's hyperparameters.

    Every training entry point calls this, so the YAML keys it reads (``data_folder``,
    ``manifest_folder``, ``train_folds``, ``valid_folds``, ``test_folds``, ``n_classes``,
    ``esc50_url``, ``download``, ``sample_rate``, ``clip_seconds``, ``resample_cache``,
    ``make_synthetic_data``, ``synthetic_n_classes``, ``synthetic_clips_per_class_per_fold``,
    ``seed``) mean the same in every recipe.
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
    )
