#!/usr/bin/env python3
"""Train L2I (Listen to Interpret) on a trained classifier and evaluate its interpretations.

    python train_l2i.py hparams/l2i_cnn14.yaml --data_folder=/path/to/ESC-10 \
        --classifier_folder=results/esc10-cnn14/1234
    python train_l2i.py hparams/l2i_focalnet.yaml --data_folder=/path/to/ESC-50 \
        --classifier_folder=results/focalnet-esc50/1234

The classifier (the checkpoint of its run with the lowest validation error) stays frozen. The NMF
dictionary is learned on the training fold first. Writes under the YAML's output_folder:
train_log.txt, hyperparameters, model.json, save/ (the checkpoints with the best validation
FID-I and the latest), test_metrics.json, confusion_matrix.png, interpretations/.
"""

import sys

from recipes.cli import run_main
from recipes.l2i import L2IBrain
from recipes.posthoc import train_posthoc


def main(argv=None):
    return train_posthoc(argv, L2IBrain, "L2I keeps the checkpoint with the best validation FID-I")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
