"""Helpers for tests that run the entry scripts as a user would: tiny, offline, one epoch."""

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_BACKBONE_CONFIG = {
    "focalnet": "{embed_dim: 8, depths: [1, 1, 1, 1]}",
    "vit": "{hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}",
    "cnn14": "{width: 2, emb_dim: 64}",  # recipes.backbones.TINY_CNN14
}


def tiny_args(hparams_file, backbone, data_folder, output_folder, *extra):
    """Command-line arguments of a tiny, offline, one-epoch run of ``hparams/<hparams_file>``."""
    return [
        f"hparams/{hparams_file}.yaml",
        f"--data_folder={data_folder}",
        f"--output_folder={output_folder}",
        f"--backbone_config={TINY_BACKBONE_CONFIG[backbone]}",
        "--download=False",
        "--n_classes=3",
        "--batch_size=4",
        "--number_of_epochs=1",
        "--n_interpretations=2",
        "--resample_cache=null",
        *extra,
    ]


def run_script(script, args, timeout=1800, env=None):
    """``python script args`` in the repository; the CompletedProcess (text output).

    ``timeout`` only guards against a hang: on a slow or shared CPU the quickstart steps take
    several minutes each.
    """
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
