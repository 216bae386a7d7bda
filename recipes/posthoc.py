"""What the post-hoc interpreter recipes (PIQ, L-MAC) share: a frozen classifier, loss bookkeeping,
checkpoint selection on a logged validation key, the test outputs, and the entry script's wiring.

A recipe subclasses ``PosthocBrain`` and sets: ``LOSS_TERMS`` (the loss dict's terms averaged per
stage), ``VALID_KEYS`` (interpretation metrics logged on validation), ``SELECT_KEY`` and
``SELECT_MAX`` (the checkpoint kept and tested), ``METHOD`` (``"piq"``, ``"lmac"``),
``INTERPRETER`` (the trained module's name in ``modules``) and ``model_card()``.
"""

from __future__ import annotations

import sys

import speechbrain as sb
import torch

from data_prep.datasets import datasets_from_hparams
from recipes.cli import load_hparams
from recipes.models import count_parameters
from recipes.runs import (
    RunFolderError,
    check_classifier_folder,
    load_frozen_classifier,
    write_model_card,
)
from recipes.training import InterpretationScoring, train_loader_options


class PosthocBrain(InterpretationScoring, sb.Brain):
    """Trains and evaluates an interpreter of a frozen classifier (see the module docstring)."""

    LOSS_TERMS: tuple[str, ...] = ()
    VALID_KEYS: tuple[str, ...] = ("acc", "fid_i", "fa")
    SELECT_KEY = "fid_i"
    SELECT_MAX = True
    METHOD = ""
    INTERPRETER = "interpreter"

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

    def model_card(self) -> dict:
        """The run's ``model.json`` content."""
        raise NotImplementedError

    def on_fit_start(self):
        """Writes the run's model card (``model.json``): its classifier run and interpreter."""
        super().on_fit_start()
        self.frozen.eval()  # the frozen classifier is not in ``modules``: it stays in eval mode
        if sb.utils.distributed.if_main_process():
            write_model_card(self.hparams.output_folder, self.model_card())

    def on_evaluate_start(self, max_key=None, min_key=None):
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        self.frozen.eval()

    def record_losses(self, losses: dict, n_clips: int) -> None:
        """Adds a batch's loss terms to the stage's sums."""
        for name in self.LOSS_TERMS:
            self.loss_sums[name] += float(losses[name].detach()) * n_clips
        self.loss_count += n_clips

    def on_stage_start(self, stage, epoch=None):
        """Fresh loss sums; fresh interpretation metrics on validation and test."""
        self.loss_sums = dict.fromkeys(self.LOSS_TERMS, 0.0)
        self.loss_count = 0
        if stage != sb.Stage.TRAIN:
            self.start_scoring()

    def _stage_stats(self, stage_loss):
        stats = {"loss": stage_loss}
        stats.update({k: v / max(self.loss_count, 1) for k, v in self.loss_sums.items()})
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs; keeps the checkpoint with the best ``SELECT_KEY``; writes the test results."""
        stats = self._stage_stats(stage_loss)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        if stage == sb.Stage.VALID:
            summary = self.interpretation_summary()
            stats.update({key: summary[key] for key in self.VALID_KEYS})
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            keys = {"max_keys" if self.SELECT_MAX else "min_keys": [self.SELECT_KEY]}
            self.checkpointer.save_and_keep_only(
                meta={self.SELECT_KEY: stats[self.SELECT_KEY], "epoch": epoch}, **keys
            )
        elif stage == sb.Stage.TEST:
            self.write_test_results(
                quantile=None,
                n_params=count_parameters(self.modules[self.INTERPRETER]),
                extra={
                    "test_loss": stage_loss,
                    "backbone": self.kind,
                    "method": f"{self.kind}-{self.METHOD}",
                    "classifier_folder": str(self.hparams.classifier_folder),
                    "classifier_n_params": count_parameters(self.frozen),
                },
            )


def train_posthoc(argv, brain_class, script: str, selection: str):
    """The entry script of a post-hoc recipe: checks, data, frozen classifier, fit, test.

    ``selection`` says in words how the checkpoint is chosen (for the one-line refusal of an
    empty ``valid_folds``).
    """
    hparams, run_opts, _, _ = load_hparams(argv)
    if not hparams["valid_folds"]:
        sys.exit(
            f"{script}: valid_folds is empty, but {selection}: give at least one validation "
            "fold (e.g. --valid_folds=[4])"
        )
    try:
        card = check_classifier_folder(hparams)  # before any data preparation
        datasets, labels = datasets_from_hparams(hparams)
        class_names = [entry["class_name"] for entry in labels]
        load_frozen_classifier(hparams, card, class_names)
    except RunFolderError as error:
        sys.exit(f"{script}: {error}")
    hparams["labels"] = labels
    hparams["class_names"] = class_names

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_loader_options(
            hparams["train_dataloader_options"], len(datasets["train"])
        ),
        valid_loader_kwargs=hparams["eval_dataloader_options"],
    )
    select = {"max_key" if brain_class.SELECT_MAX else "min_key": brain_class.SELECT_KEY}
    brain.evaluate(
        datasets["test"], test_loader_kwargs=hparams["eval_dataloader_options"], **select
    )
    return brain
