"""The classifier recipe: FocalNet / ViT training and by-design interpretation on the test fold.

``ClassifierBrain`` trains backbone + cosine head with an angular-margin softmax loss, keeps the
checkpoint with the lowest validation error, and on the test fold computes, per batch, the
by-design interpretation (modulation map / attention, upsampled and thresholded at quantile q)
and ACC, FID-I, FA and FA_mask_in with ``interpreters.metrics`` — three forwards per clip: the
clip, and one batched forward of the interpretation and of the masked-out input.

Modules it expects (``modules`` in the YAML): ``features`` (``recipes.features.LogSpectrogram``),
``embedding_model`` (``recipes.models.FocalNetEmbedder`` / ``ViTEmbedder``) and ``classifier``
(``recipes.models.build_head``). Hyperparameters: ``compute_cost``, ``augmentation`` (or null),
``lr_annealing``, ``error_stats``, ``quantile``, ``n_interpretations``, ``class_names``,
``output_folder``, ``train_logger``, ``epoch_counter``.
"""

from __future__ import annotations

import logging

import speechbrain as sb
import torch

from interpreters.maps import MAP_FUNCTIONS, quantile_mask, upsample_map
from recipes.features import to_image
from recipes.models import count_parameters
from recipes.runs import model_card, write_model_card
from recipes.training import InterpretationScoring

logger = logging.getLogger(__name__)


class ClassifierBrain(InterpretationScoring, sb.Brain):
    """Trains and evaluates an interpretable-by-design sound classifier."""

    def classify(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of log-spectrograms [B, T, F] (the metrics' callable)."""
        embedding = self.modules.embedding_model(to_image(log_spec))["embedding"]
        return self.modules.classifier(embedding.unsqueeze(1)).squeeze(1)

    def on_fit_start(self):
        """Writes the run's model card (``model.json``) for ``train_piq.py`` and other tools."""
        super().on_fit_start()
        if sb.utils.distributed.if_main_process():
            card = model_card(
                vars(self.hparams),
                self.hparams.class_names,
                self.hparams.embedding_model.embedding_size,
                labels=getattr(self.hparams, "labels", None),
            )
            write_model_card(self.hparams.output_folder, card)

    def compute_forward(self, batch, stage):
        """Waveforms -> (augmentation) -> log-spectrogram -> image -> backbone -> cosine head."""
        batch = batch.to(self.device)
        wavs, lens = batch.signal
        if stage == sb.Stage.TRAIN and self.hparams.augmentation is not None:
            wavs, lens = self.hparams.augmentation(wavs, lens)
        log_spec, phase = self.modules.features(wavs)
        out = self.modules.embedding_model(to_image(log_spec), with_map=stage == sb.Stage.TEST)
        scores = self.modules.classifier(out["embedding"].unsqueeze(1))  # [B, 1, n_classes]
        return {
            "scores": scores,
            "log_spec": log_spec,
            "phase": phase,
            "raw_map": out.get("raw_map"),
            "n_samples": wavs.shape[1],
        }

    def compute_objectives(self, predictions, batch, stage):
        """Angular-margin loss; validation/test error; test interpretation metrics."""
        scores = predictions["scores"]
        labels = batch.label.to(self.device).unsqueeze(1)  # [B, 1]
        loss = self.hparams.compute_cost(scores, labels)
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, scores, labels)
        if stage == sb.Stage.TEST:
            self._interpret_batch(predictions, batch)
        return loss

    @torch.no_grad()
    def _interpret_batch(self, predictions, batch):
        log_spec = predictions["log_spec"]
        by_design_map = MAP_FUNCTIONS[self.hparams.embedding_model.kind](predictions["raw_map"])
        mask = quantile_mask(upsample_map(by_design_map, log_spec.shape[1:]), self.quantile)
        self.score_masks(
            batch,
            log_spec,
            predictions["phase"],
            mask,
            predictions["scores"].squeeze(1),
            predictions["n_samples"],
            save=True,
        )

    def on_stage_start(self, stage, epoch=None):
        """Fresh error statistics each stage; fresh interpretation metrics for the test."""
        self.error_metrics = self.hparams.error_stats()
        if stage == sb.Stage.TEST:
            self.quantile = float(self.hparams.quantile)
            self.start_scoring()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """The cyclic learning rate advances on training steps only."""
        if should_step:
            self.hparams.lr_annealing.on_batch_end(self.optimizer)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, checkpoints on validation error, writes the test results."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        stats = {"loss": stage_loss, "error": self.reduced_error(self.error_metrics)}
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": lr},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(meta={"error": stats["error"]}, min_keys=["error"])
        elif stage == sb.Stage.TEST:
            self._write_test_results(stats)

    def _write_test_results(self, stats):
        kind = self.hparams.embedding_model.kind
        self.write_test_results(
            quantile=self.quantile,
            n_params=count_parameters(self.modules.embedding_model, self.modules.classifier),
            extra={"test_loss": stats["loss"], "backbone": kind, "method": kind},
        )
