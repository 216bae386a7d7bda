"""The classifier recipe: FocalNet / ViT training and by-design interpretation on the test fold.

``ClassifierBrain`` trains backbone + cosine head with an angular-margin softmax loss, keeps the
checkpoint with the lowest validation error (without validation folds: the last epoch's), and on
the test fold computes, per batch, the by-design interpretation (modulation map / attention,
upsampled and thresholded at quantile q) and ACC, FID-I, FA and FA_mask_in with
``interpreters.metrics`` — three forwards per clip: the clip, and one batched forward of the
interpretation and of the masked-out input.

Modules it expects (``modules`` in the YAML): ``features`` (``recipes.features.LogSpectrogram``),
``embedding_model`` (a ``recipes.backbones`` backbone) and ``classifier``
(``recipes.models.build_head``). Hyperparameters: ``compute_cost``, ``augmentation`` (or null),
``lr_annealing``, ``error_stats``, ``quantile``, ``n_interpretations``, ``class_names``,
``output_folder``, ``train_logger``, ``epoch_counter``; optional (the from-scratch recipes,
``recipes.augment``): ``spec_augmentation`` (applied to the log-spectrogram in training),
``mixup_alpha`` (> 0: mixup of the training log-spectrograms) and an ``lr_annealing`` with
``set_progress`` (``WarmupCosine``: set before every training step from the epoch's progress).
"""

from __future__ import annotations

import logging

import speechbrain as sb
import torch

from interpreters.maps import quantile_mask
from interpreters.methods import MethodBatch, get_method
from recipes.augment import mixup
from recipes.models import AudioClassifier, count_parameters
from recipes.runs import model_card, write_model_card
from recipes.training import InterpretationScoring

logger = logging.getLogger(__name__)


class ClassifierBrain(InterpretationScoring, sb.Brain):
    """Trains and evaluates an interpretable-by-design sound classifier."""

    @property
    def audio_classifier(self) -> AudioClassifier:
        """The training modules as the one classifier module (``recipes.models``)."""
        return AudioClassifier(
            self.modules.embedding_model, self.modules.classifier, view=self.hparams.embedding_model
        )

    def classify(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of log-spectrograms [B, T, F] (the metrics' callable)."""
        return self.audio_classifier.scores(log_spec)

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
        """Waveforms -> (augmentation) -> log-spectrogram -> (spectrogram augmentation, mixup)
        -> image -> backbone -> cosine head."""
        batch = batch.to(self.device)
        wavs, lens = batch.signal
        labels_b, lam = None, 1.0
        if stage == sb.Stage.TRAIN and self.hparams.augmentation is not None:
            wavs, lens = self.hparams.augmentation(wavs, lens)
        log_spec, phase = self.modules.features(wavs, with_phase=stage == sb.Stage.TEST)
        if stage == sb.Stage.TRAIN:
            spec_augmentation = getattr(self.hparams, "spec_augmentation", None)
            if spec_augmentation is not None:
                log_spec, _ = spec_augmentation(log_spec, lens)
            alpha = getattr(self.hparams, "mixup_alpha", 0.0) or 0.0
            if alpha > 0:
                log_spec, labels_b, lam = mixup(log_spec, batch.label, alpha)
        out = self.audio_classifier(log_spec, with_map=stage == sb.Stage.TEST)
        return {
            "scores": out["scores"].unsqueeze(1),  # [B, 1, n_classes], as the loss wants
            "outputs": out,
            "log_spec": log_spec,
            "phase": phase,
            "n_samples": wavs.shape[1],
            "labels_b": labels_b,
            "lam": lam,
        }

    def compute_objectives(self, predictions, batch, stage):
        """Angular-margin loss; validation/test error; test interpretation metrics."""
        scores = predictions["scores"]
        labels = batch.label.to(self.device).unsqueeze(1)  # [B, 1]
        loss = self.hparams.compute_cost(scores, labels)
        if predictions.get("labels_b") is not None:  # mixup: both labels, weighted
            loss_b = self.hparams.compute_cost(scores, predictions["labels_b"].unsqueeze(1))
            loss = predictions["lam"] * loss + (1.0 - predictions["lam"]) * loss_b
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, scores, labels)
        if stage == sb.Stage.TEST:
            self._interpret_batch(predictions, batch)
        return loss

    @torch.no_grad()
    def _interpret_batch(self, predictions, batch):
        log_spec = predictions["log_spec"]
        outputs = predictions["outputs"]
        if outputs.get("raw_map") is not None:
            self.note_dtype("raw_map", outputs["raw_map"])
        # The by-design map; a backbone without one (CNN14) names another method.
        method = get_method(self.hparams.embedding_model.test_method)
        values = method.compute(MethodBatch(log_spec, outputs, self.audio_classifier))
        mask = quantile_mask(values, self.quantile)
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

    def on_fit_batch_start(self, batch, should_step):
        """A progress-driven schedule (``WarmupCosine``) sets the rate before each step."""
        schedule = self.hparams.lr_annealing
        if should_step and hasattr(schedule, "set_progress"):
            epoch = self.hparams.epoch_counter.current
            schedule.set_progress(
                self.optimizer, epoch - 1 + (self.step - 1) / self.n_train_batches
            )

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """The cyclic learning rate advances on training steps only."""
        schedule = self.hparams.lr_annealing
        if should_step and not hasattr(schedule, "set_progress"):
            schedule.on_batch_end(self.optimizer)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, checkpoints on validation error, writes the test results.

        Without validation folds (``valid_folds: []``) every epoch ends with a checkpoint marked
        ``no_validation`` and only the latest is kept: the last epoch's model is the one tested.
        """
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            if not self.hparams.valid_folds:
                lr = self.optimizer.param_groups[0]["lr"]
                self.hparams.train_logger.log_stats(
                    stats_meta={"epoch": epoch, "lr": lr}, train_stats=self.train_stats
                )
                self.checkpointer.save_and_keep_only(
                    meta={"epoch": epoch, "no_validation": True}, num_to_keep=1
                )
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
        self.write_test_results(
            quantile=self.quantile,
            n_params=count_parameters(self.modules.embedding_model, self.modules.classifier),
            extra={
                "test_loss": stats["loss"],
                "backbone": self.hparams.embedding_model.name,
                "method": self.hparams.embedding_model.test_method,
            },
        )
