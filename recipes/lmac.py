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
from recipes.models import count_parameters
from recipes.runs import lmac_model_card, write_model_card
from recipes.training import InterpretationScoring

LOSS_TERMS = ("ce_in", "ce_out", "l1")


class LMACBrain(InterpretationScoring, sb.Brain):
    """Trains and evaluates the L-MAC decoder of a frozen classifier."""

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
        """Writes the run's model card (``model.json``): its classifier run and decoder."""
        super().on_fit_start()
        self.frozen.eval()  # Brain.fit puts every module in training mode; these stay frozen
        if sb.utils.distributed.if_main_process():
            card = lmac_model_card(vars(self.hparams), self.hparams.decoder)
            write_model_card(self.hparams.output_folder, card)

    def on_evaluate_start(self, max_key=None, min_key=None):
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        self.frozen.eval()

    def _scores(self, log_spec, with_stages=False):
        image = self.hparams.embedding_model.image(log_spec)
        out = self.frozen["embedding_model"](image, with_stages=with_stages)
        scores = self.frozen["classifier"](out["embedding"].unsqueeze(1)).squeeze(1)
        return scores, out.get("stages")

    @torch.no_grad()
    def classify(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of the frozen classifier (the metrics' callable)."""
        return self._scores(log_spec)[0]

    def compute_forward(self, batch, stage):
        """Waveforms -> log-spectrogram -> frozen classifier -> decoder mask."""
        batch = batch.to(self.device)
        wavs, _ = batch.signal
        log_spec, phase = self.modules.features(wavs)
        with torch.no_grad():
            scores, stages = self._scores(log_spec, with_stages=True)
        logits = self.modules.decoder(stages, tuple(log_spec.shape[1:]))
        return {
            "mask": torch.sigmoid(logits),
            "scores": scores,
            "log_spec": log_spec,
            "phase": phase,
            "n_samples": wavs.shape[1],
        }

    def compute_objectives(self, predictions, batch, stage):
        """L-MAC's loss; on validation and test, the interpretation metrics."""
        log_spec, mask = predictions["log_spec"], predictions["mask"]
        target = predictions["scores"].argmax(dim=1)
        with torch.set_grad_enabled(stage == sb.Stage.TRAIN):
            both = torch.cat([mask * log_spec, (1.0 - mask) * log_spec])
            scores_in, scores_out = self._scores(both)[0].chunk(2)
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
        for name in LOSS_TERMS:
            self.loss_sums[name] += float(losses[name].detach()) * len(batch.id)
        self.loss_count += len(batch.id)
        if stage != sb.Stage.TRAIN:
            self.score_masks(
                batch,
                log_spec,
                predictions["phase"],
                mask.detach(),
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
        """Logs; keeps the checkpoint with the lowest validation loss; writes the test results."""
        stats = self._stage_stats(stage_loss)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        if stage == sb.Stage.VALID:
            summary = self.interpretation_summary()
            stats.update({key: summary[key] for key in ("acc", "fid_i", "fa", "sps")})
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"loss": stats["loss"], "epoch": epoch}, min_keys=["loss"]
            )
        elif stage == sb.Stage.TEST:
            self.write_test_results(
                quantile=None,
                n_params=count_parameters(self.modules.decoder),
                extra={
                    "test_loss": stage_loss,
                    "backbone": self.kind,
                    "method": f"{self.kind}-lmac",
                    "classifier_folder": str(self.hparams.classifier_folder),
                    "classifier_n_params": count_parameters(self.frozen),
                },
            )
