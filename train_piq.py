#!/usr/bin/env python3
"""Train the PIQ post-hoc interpreter on a trained classifier and evaluate its interpretations.

    python train_piq.py hparams/piq_focalnet.yaml --data_folder=/path/to/ESC-50 \
        --classifier_folder=results/focalnet-esc50/1234
    python train_piq.py hparams/piq_vit.yaml --data_folder=/path/to/ESC-50 \
        --classifier_folder=results/vit-esc50/1234

The classifier (the checkpoint of its run with the lowest validation error) stays frozen. Writes
under the YAML's output_folder: train_log.txt, hyperparameters, save/ (the checkpoints with the
best validation FID-I and the latest), test_metrics.json, confusion_matrix.png, interpretations/.
"""

import sys

from recipes.cli import run_main
from recipes.piq import PIQBrain
from recipes.posthoc import train_posthoc


def main(argv=None):
    return train_posthoc(argv, PIQBrain, "PIQ keeps the checkpoint with the best validation FID-I")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
