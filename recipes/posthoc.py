"""What the post-hoc interpreter recipes (PIQ, L-MAC, L2I) share: a frozen classifier, loss
bookkeeping, checkpoint selection on a logged validation key, the test outputs, a recipe's work
on the training set before its epochs (``before_fit``), and the entry script's wiring.

A recipe subclasses ``PosthocBrain`` and sets: ``METHOD`` (its entry in the method registry,
``interpreters.methods``: the ``TrainedRun`` there names the trained module in ``modules``, the
checkpoint kept and tested, and the run's ``model.json`` section), ``LOSS_TERMS`` (the loss dict's
terms averaged per stage) and ``VALID_KEYS`` (interpretation metrics logged on validation).
"""

from __future__ import annotations

import speechbrain as sb
import torch

from data_prep.datasets import datasets_from_hparams
from interpreters.methods import METHODS
from recipes.cli import load_hparams
from recipes.models import AudioClassifier, count_parameters
from recipes.runs import (
    RunFolderError,
    check_classifier_folder,
    load_frozen_classifier,
    method_run_card,
    write_model_card,
)
from recipes.training import InterpretationScoring, train_loader_options


class PosthocBrain(InterpretationScoring, sb.Brain):
    """Trains and evaluates an interpreter of a frozen classifier (see the module docstring)."""

    LOSS_TERMS: tuple[str, ...] = ()
    VALID_KEYS: tuple[str, ...] = ("acc", "fid_i", "fa")
    METHOD = ""

    @classmethod
    def trained_run(cls):
        """The registry's ``TrainedRun`` of ``METHOD``."""
        return METHODS[cls.METHOD].run

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frozen = torch.nn.ModuleDict(
            {
                "embedding_model": self.hparams.embedding_model,
                "classifier": self.hparams.classifier,
            }
        ).to(self.device)
        self.frozen.eval().requires_grad_(False)
        self.frozen_classifier = AudioClassifier(
            self.frozen["embedding_model"], self.frozen["classifier"]
        )
        self.backbone = self.hparams.embedding_model.name

    @torch.no_grad()
    def classify(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Cosine scores [B, n_classes] of the frozen classifier (the metrics' callable)."""
        return self.frozen_classifier.scores(log_spec)

    def model_card(self) -> dict:
        """The run's ``model.json`` content (``recipes.runs.method_run_card``)."""
        module = self.modules[self.trained_run().module_key]
        return method_run_card(self.METHOD, vars(self.hparams), module)

    def on_fit_start(self):
        """Writes the run's model card (``model.json``): its classifier run and interpreter."""
        super().on_fit_start()
        self.frozen.eval()  # the frozen classifier is not in ``modules``: it stays in eval mode
        if sb.utils.distributed.if_main_process():
            write_model_card(self.hparams.output_folder, self.model_card())

    def on_evaluate_start(self, max_key=None, min_key=None):
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        self.frozen.eval()

    def before_fit(self, train_set, loader_kwargs: dict) -> None:
        """What a recipe does on the training set before its epochs (L2I: its NMF dictionary);
        nothing by default."""

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
            run = self.trained_run()
            keys = {"max_keys" if run.select_max else "min_keys": [run.select_key]}
            self.checkpointer.save_and_keep_only(
                meta={run.select_key: stats[run.select_key], "epoch": epoch}, **keys
            )
        elif stage == sb.Stage.TEST:
            self.write_test_results(
                quantile=None,
                n_params=count_parameters(self.modules[self.trained_run().module_key]),
                extra={
                    "test_loss": stage_loss,
                    "backbone": self.backbone,
                    "method": self.METHOD,
                    "classifier_folder": str(self.hparams.classifier_folder),
                    "classifier_n_params": count_parameters(self.frozen),
                },
            )


def train_posthoc(argv, brain_class, selection: str):
    """The entry script of a post-hoc recipe: checks, data, frozen classifier, fit, test.

    ``selection`` says in words how the checkpoint is chosen (for the one-line refusal of an
    empty ``valid_folds``). Bad settings raise the project's errors; the script's
    ``recipes.cli.run_main`` turns them into one line.
    """
    hparams, run_opts, _, _ = load_hparams(argv)
    if not hparams["valid_folds"]:
        raise RunFolderError(
            f"valid_folds is empty, but {selection}: give at least one validation fold (e.g. "
            "--valid_folds=[4])"
        )
    card = check_classifier_folder(hparams)  # before any data preparation
    datasets, labels = datasets_from_hparams(hparams)
    class_names = [entry["class_name"] for entry in labels]
    load_frozen_classifier(hparams, card, class_names)
    hparams["labels"] = labels
    hparams["class_names"] = class_names

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.before_fit(
        datasets["train"],
        train_loader_options(hparams["train_dataloader_options"], len(datasets["train"])),
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
    run = brain_class.trained_run()
    select = {"max_key" if run.select_max else "min_key": run.select_key}
    brain.evaluate(
        datasets["test"], test_loader_kwargs=hparams["eval_dataloader_options"], **select
    )
    return brain
