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

from interpreters.piq import piq_loss, representation_grid, target_mask
from recipes.models import count_parameters
from recipes.runs import piq_model_card, write_model_card
from recipes.training import InterpretationScoring

LOSS_TERMS = ("reconstruction", "codebook", "commitment")


class PIQBrain(InterpretationScoring, sb.Brain):
    """Trains and evaluates the PIQ interpreter of a frozen classifier."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frozen = torch.nn.ModuleDict(
            {
                "embedding_model": self.hparams.embedding_model,
                "classifier": self.hparams.classifier,
            }
        ).to(self.device)
        self.frozen.eval().requires_grad_(False)
        self.kind = self.hparams.embedding_model.kind

    def on_fit_start(self):
        """Writes the run's model card (``model.json``): its classifier run and interpreter."""
        super().on_fit_start()
        if sb.utils.distributed.if_main_process():
            card = piq_model_card(vars(self.hparams), self.hparams.interpreter)
            write_model_card(self.hparams.output_folder, card)

    @torch.no_grad()
    def classify(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of the frozen classifier (the metrics' callable)."""
        return self._classifier_outputs(log_spec)[0]

    def _classifier_outputs(self, log_spec):
        out = self.frozen["embedding_model"](self.hparams.embedding_model.image(log_spec))
        scores = self.frozen["classifier"](out["embedding"].unsqueeze(1)).squeeze(1)
        return scores, out["representation"]

    def compute_forward(self, batch, stage):
        """Waveforms -> log-spectrogram -> frozen classifier -> interpreter mask."""
        batch = batch.to(self.device)
        wavs, _ = batch.signal
        log_spec, phase = self.modules.features(wavs)
        with torch.no_grad():
            scores, representation = self._classifier_outputs(log_spec)
            grid = representation_grid(representation, self.kind)
        out = self.modules.interpreter(grid, scores.argmax(dim=1))
        out.update(scores=scores, log_spec=log_spec, phase=phase, n_samples=wavs.shape[1])
        return out

    def compute_objectives(self, predictions, batch, stage):
        """Mask BCE + VQ losses; on validation and test, the interpretation metrics."""
        log_spec = predictions["log_spec"]
        target = target_mask(log_spec, self.hparams.mask_threshold)
        losses = piq_loss(predictions, target, beta=self.hparams.beta)
        for name in LOSS_TERMS:
            self.loss_sums[name] += float(losses[name].detach()) * len(batch.id)
        self.loss_count += len(batch.id)
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

    def on_stage_start(self, stage, epoch=None):
        """Fresh loss sums; fresh interpretation metrics on validation and test."""
        self.loss_sums = dict.fromkeys(LOSS_TERMS, 0.0)
        self.loss_count = 0
        if stage != sb.Stage.TRAIN:
            self.start_scoring()

    def _stage_stats(self, stage_loss):
        stats = {"loss": stage_loss}
        stats.update({k: v / max(self.loss_count, 1) for k, v in self.loss_sums.items()})
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs; keeps the checkpoint with the best validation FID-I; writes the test results."""
        stats = self._stage_stats(stage_loss)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        if stage == sb.Stage.VALID:
            summary = self.interpretation_summary()
            stats.update({key: summary[key] for key in ("acc", "fid_i", "fa", "fa_mask_in")})
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"fid_i": stats["fid_i"], "epoch": epoch}, max_keys=["fid_i"]
            )
        elif stage == sb.Stage.TEST:
            self.write_test_results(
                quantile=None,
                n_params=count_parameters(self.modules.interpreter),
                extra={
                    "test_loss": stage_loss,
                    "backbone": self.kind,
                    "method": f"{self.kind}-piq",
                    "classifier_folder": str(self.hparams.classifier_folder),
                    "classifier_n_params": count_parameters(self.frozen),
                },
            )
