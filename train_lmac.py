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

from recipes.cli import run_main
from recipes.lmac import LMACBrain
from recipes.posthoc import train_posthoc


def main(argv=None):
    return train_posthoc(
        argv,
        LMACBrain,
        "L-MAC keeps the checkpoint with the lowest validation loss",
    )


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
