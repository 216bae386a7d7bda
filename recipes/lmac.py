"""The L-MAC recipe: a post-hoc mask decoder trained on a frozen classifier.

``LMACBrain`` reads clips, computes their log-spectrograms ``X``, runs the frozen classifier
(embedding model + cosine head, eval mode, loaded from a ``train_classifier.py`` run) once for its
prediction ``c`` and its representations at several depths, decodes a mask ``M`` from them
(``interpreters.lmac.LMACDecoder``) and trains the decoder with L-MAC's loss on the classifier's
scores of ``M * X`` and ``(1 - M) * X`` (gradients flow through the frozen classifier into the
decoder). On the validation fold it scores the masks with the same metrics as every other method
and keeps the checkpoint with the lowest validation loss (logged as ``loss``); on the test fold it
writes the same outputs (test_metrics.json, confusion_matrix.png, interpretations/).

The learning rate follows the authors' plateau schedule (``lr_annealing``, SpeechBrain's
``ReduceLROnPlateau(factor=0.5, patience=3, dont_halve_until_epoch=100)`` in their
``lmac_cnn14.yaml``), stepped at the end of every validation on the negated validation Fid-In
(``-fid_i``, as their ``interpreter_brain.py``: higher Fid-In is better). Up to epoch
``dont_halve_until_epoch`` the rate stays and every validation becomes the reference; after it, a
validation whose Fid-In is at least the reference's becomes the reference, and the ``patience`` +
1-th validation in a row below it halves the rate (the count then restarts). The step runs
before the epoch's checkpoint is saved, so the checkpoint holds the schedule's state (a
recoverable in the YAMLs) and the optimiser's new rate, and a resumed run continues the same
schedule; the train log's ``lr`` of an epoch is therefore the rate after that epoch's step (the
next epoch's). Without an ``lr_annealing`` the rate is constant.

Modules it expects (``modules`` in the YAML): ``features`` and ``decoder``; the frozen
``embedding_model`` and ``classifier`` are hyperparameters, never trained. Hyperparameters:
``l_in_weight``, ``l_out_weight``, ``l1_weight``, ``score_scale``, ``lr_annealing``,
``class_names``, ``n_interpretations``, ``output_folder``, ``train_logger``, ``epoch_counter``.

Example
-------
>>> from types import SimpleNamespace
>>> from speechbrain.nnet.schedulers import ReduceLROnPlateau
>>> optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
>>> schedule = ReduceLROnPlateau(factor=0.5, patience=3, dont_halve_until_epoch=1)
>>> brain = SimpleNamespace(hparams=SimpleNamespace(lr_annealing=schedule), optimizer=optimizer)
>>> fid_i = [0.9, 0.8, 0.8, 0.8, 0.8, 0.8]  # epoch 1 is the reference; then 4 below it
>>> [LMACBrain.step_schedule(brain, epoch, f)[1] for epoch, f in enumerate(fid_i, 1)]
[1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
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

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """On validation, steps the plateau schedule on the validation Fid-In first (before the
        log and the checkpoint: see the module docstring), then logs and checkpoints as every
        post-hoc recipe."""
        if stage == sb.Stage.VALID:
            # The summary all-reduces the metrics in place: computed once, reused by the parent.
            self._valid_summary = self.interpretation_summary()
            self.step_schedule(epoch, self._valid_summary["fid_i"])
        try:
            super().on_stage_end(stage, stage_loss, epoch)
        finally:
            self._valid_summary = None

    def interpretation_summary(self, **kwargs) -> dict:
        """The stage's summary; on validation, the one the schedule was stepped on."""
        cached = getattr(self, "_valid_summary", None)
        if cached is not None and not kwargs:
            return cached
        return super().interpretation_summary(**kwargs)

    def step_schedule(self, epoch: int, fid_i: float):
        """One step of ``lr_annealing`` on ``-fid_i``; sets the optimiser's rate.

        Returns the rate before and after the step, or None without a schedule.
        """
        schedule = getattr(self.hparams, "lr_annealing", None)
        if schedule is None:
            return None
        old_lr, new_lr = schedule([self.optimizer], epoch, -float(fid_i))
        sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
        return old_lr, new_lr

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
