"""The L-MAC recipe: a post-hoc mask decoder trained on a frozen classifier.

``LMACBrain`` reads clips, computes their log-spectrograms ``X``, runs the frozen classifier
(embedding model + cosine head, eval mode, loaded from a ``train_classifier.py`` run) once for its
prediction ``c`` and its representations at several depths, decodes a mask ``M`` from them
(``interpreters.lmac.LMACDecoder``) and trains the decoder with L-MAC's loss on the classifier's
scores of ``M * X`` and ``(1 - M) * X`` (gradients flow through the frozen classifier into the
decoder). On the validation fold it scores the masks with the same metrics as every other method
and keeps the checkpoint with the lowest validation loss (logged as ``loss``); on the test fold it
writes the same outputs (test_metrics.json, confusion_matrix.png, interpretations/).

Modules it expects (``modules`` in the YAML): ``features`` and ``decoder``; the frozen
``embedding_model`` and ``classifier`` are hyperparameters, never trained. Hyperparameters:
``l_in_weight``, ``l_out_weight``, ``l1_weight``, ``score_scale``, ``class_names``,
``n_interpretations``, ``output_folder``, ``train_logger``, ``epoch_counter``.
"""

from __future__ import annotations

import speechbrain as sb
import torch

from interpreters.lmac import lmac_loss
from recipes.posthoc import PosthocBrain

LOSS_TERMS = ("ce_in", "ce_out", "l1")


class LMACBrain(PosthocBrain):
    """Trains and evaluates the L-MAC decoder of a frozen classifier."""

    LOSS_TERMS = LOSS_TERMS
    VALID_KEYS = ("acc", "fid_i", "fa", "sps")
    METHOD = "lmac"

    def compute_forward(self, batch, stage):
        """Waveforms -> log-spectrogram -> frozen classifier -> decoder mask."""
        batch = batch.to(self.device)
        wavs, _ = batch.signal
        log_spec, phase = self.modules.features(wavs, with_phase=stage == sb.Stage.TEST)
        with torch.no_grad():
            classified = self.frozen_classifier(log_spec, with_stages=True)
            scores = classified["scores"]
        logits = self.modules.decoder(classified["stages"], tuple(log_spec.shape[1:]))
        return {
            "mask": torch.sigmoid(logits),
            "scores": scores,
            "log_spec": log_spec,
            "phase": phase,
            "n_samples": wavs.shape[1],
        }

    def compute_objectives(self, predictions, batch, stage):
        """L-MAC's loss; on validation and test, the interpretation metrics.

        On validation and test the metrics' one batched forward of ``M * X`` and
        ``(1 - M) * X`` also gives the loss's scores (no second forward).
        """
        log_spec, mask = predictions["log_spec"], predictions["mask"]
        target = predictions["scores"].argmax(dim=1)
        if stage == sb.Stage.TRAIN:
            both = torch.cat([mask * log_spec, (1.0 - mask) * log_spec])
            masked_scores = self.frozen_classifier.scores(both)
        else:
            result = self.score_masks(
                batch,
                log_spec,
                predictions["phase"],
                mask.detach(),
                predictions["scores"],
                predictions["n_samples"],
                save=stage == sb.Stage.TEST,
            )
            masked_scores = result["masked_scores"]
        scores_in, scores_out = masked_scores.chunk(2)
        losses = lmac_loss(
            scores_in,
            scores_out,
            mask,
            target,
            self.hparams.score_scale,
            self.hparams.l_in_weight,
            self.hparams.l_out_weight,
            self.hparams.l1_weight,
        )
        self.record_losses(losses, len(batch.id))
        return losses["total"]
