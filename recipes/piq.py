"""The PIQ recipe: a post-hoc interpreter trained on a frozen classifier.

``PIQBrain`` reads clips, computes their log-spectrograms, runs the frozen classifier (embedding
model + cosine head, eval mode, no gradients, loaded from a ``train_classifier.py`` run) to get its
representation and predicted class, and trains ``interpreters.piq.PIQInterpreter`` to output a
mask: binary cross-entropy against ``log_spec > mask_threshold * max(log_spec)`` plus the VQ
codebook and commitment losses. On the validation fold it scores the masks with the same metrics
as the classifier recipe and keeps the checkpoint with the best FID-I; on the test fold it writes
the same outputs (test_metrics.json, confusion_matrix.png, interpretations/).

Modules it expects (``modules`` in the YAML): ``features`` and ``interpreter``; the frozen
``embedding_model`` and ``classifier`` are hyperparameters, never trained. Hyperparameters:
``mask_threshold``, ``beta``, ``class_names``, ``n_interpretations``, ``output_folder``,
``train_logger``, ``epoch_counter``.
"""

from __future__ import annotations

import speechbrain as sb
import torch

from interpreters.piq import piq_grid, piq_loss, target_mask
from recipes.posthoc import PosthocBrain

LOSS_TERMS = ("reconstruction", "codebook", "commitment")


class PIQBrain(PosthocBrain):
    """Trains and evaluates the PIQ interpreter of a frozen classifier."""

    LOSS_TERMS = LOSS_TERMS
    VALID_KEYS = ("acc", "fid_i", "fa", "fa_mask_in")
    METHOD = "piq"

    def compute_forward(self, batch, stage):
        """Waveforms -> log-spectrogram -> frozen classifier -> interpreter mask."""
        batch = batch.to(self.device)
        wavs, _ = batch.signal
        log_spec, phase = self.modules.features(wavs, with_phase=stage == sb.Stage.TEST)
        with torch.no_grad():
            classified = self.frozen_classifier(log_spec)
            scores = classified["scores"]
        out = self.modules.interpreter(piq_grid(classified["grid"]), scores.argmax(dim=1))
        out.update(scores=scores, log_spec=log_spec, phase=phase, n_samples=wavs.shape[1])
        return out

    def compute_objectives(self, predictions, batch, stage):
        """Mask BCE + VQ losses; on validation and test, the interpretation metrics."""
        log_spec = predictions["log_spec"]
        target = target_mask(log_spec, self.hparams.mask_threshold)
        losses = piq_loss(predictions, target, beta=self.hparams.beta)
        self.record_losses(losses, len(batch.id))
        if stage != sb.Stage.TRAIN:
            self.score_masks(
                batch,
                log_spec,
                predictions["phase"],
                predictions["mask"],
                predictions["scores"],
                predictions["n_samples"],
                save=stage == sb.Stage.TEST,
            )
        return losses["total"]
