#!/usr/bin/env python3
"""Train L-MAC (Listenable Maps for Audio Classifiers) on a trained classifier and evaluate it.

    python train_lmac.py hparams/lmac_focalnet.yaml --data_folder=/path/to/ESC-50 \
        --classifier_folder=results/focalnet-esc50/1234
    python train_lmac.py hparams/lmac_vit.yaml --data_folder=/path/to/ESC-50 \
        --classifier_folder=results/vit-esc50/1234

The classifier (the checkpoint of its run with the lowest validation error) stays frozen. Writes
under the YAML's output_folder: train_log.txt, hyperparameters, model.json, save/ (the
checkpoints with the lowest validation loss and the latest), test_metrics.json,
confusion_matrix.png, interpretations/.
"""

import sys

from data_prep.datasets import datasets_from_hparams
from recipes.cli import load_hparams, run_main
from recipes.lmac import LMACBrain
from recipes.runs import RunFolderError, check_classifier_folder, load_frozen_classifier
from recipes.training import train_loader_options


def main(argv=None):
    hparams, run_opts, _, _ = load_hparams(argv)
    if not hparams["valid_folds"]:
        sys.exit(
            "train_lmac.py: valid_folds is empty, but L-MAC keeps the checkpoint with the lowest "
            "validation loss: give at least one validation fold (e.g. --valid_folds=[4])"
        )
    try:
        card = check_classifier_folder(hparams)  # before any data preparation
        datasets, labels = datasets_from_hparams(hparams)
        class_names = [entry["class_name"] for entry in labels]
        load_frozen_classifier(hparams, card, class_names)
    except RunFolderError as error:
        sys.exit(f"train_lmac.py: {error}")
    hparams["labels"] = labels
    hparams["class_names"] = class_names

    brain = LMACBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_loader_options(
            hparams["train_dataloader_options"], len(datasets["train"])
        ),
        valid_loader_kwargs=hparams["eval_dataloader_options"],
    )
    brain.evaluate(
        datasets["test"], min_key="loss", test_loader_kwargs=hparams["eval_dataloader_options"]
    )
    return brain


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
