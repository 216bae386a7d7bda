#!/usr/bin/env python3
"""Train a FocalNet / ViT classifier on ESC-50 and evaluate its by-design interpretations.

    python train_classifier.py hparams/focalnet.yaml --data_folder=/path/to/ESC-50
    python train_classifier.py hparams/vit.yaml --data_folder=/path/to/ESC-50

Writes under the YAML's output_folder: train_log.txt, hyperparams.yaml, save/ (checkpoints),
test_metrics.json, confusion_matrix.png and interpretations/ (PNG + WAV per clip).
With --valid_folds=[] it trains without validation and tests the last epoch's model.
"""

import sys

from data_prep.datasets import datasets_from_hparams
from recipes.classifier import ClassifierBrain
from recipes.cli import load_hparams, run_main
from recipes.training import train_loader_options


def main(argv=None, brain_class=ClassifierBrain):
    """Runs the recipe; ``brain_class`` is a ``ClassifierBrain`` (a subclass for profiling)."""
    hparams, run_opts, _, _ = load_hparams(argv)
    datasets, labels = datasets_from_hparams(hparams)
    hparams["labels"] = labels
    hparams["class_names"] = [entry["class_name"] for entry in labels]

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    validate = datasets["valid"] is not None
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"] if validate else None,
        train_loader_kwargs=train_loader_options(
            hparams["train_dataloader_options"], len(datasets["train"])
        ),
        valid_loader_kwargs=hparams["eval_dataloader_options"],
    )
    brain.evaluate(
        datasets["test"],
        min_key="error" if validate else None,  # None: the latest checkpoint
        test_loader_kwargs=hparams["eval_dataloader_options"],
    )
    return brain


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
