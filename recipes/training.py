"""Pieces shared by the recipes' ``Brain`` subclasses (classifier and PIQ): checkpoints that are
written atomically, the random state as a recoverable, and ``InterpretationScoring``, the one
place where masks are scored with ``interpreters.metrics`` and test results are written.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    METAFNAME,
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from interpreters.metrics import MetricsAccumulator, interpretation_scores, write_metrics_json
from recipes.labels import default_labels
from recipes.outputs import save_confusion_matrix_png, save_interpretations
from recipes.report_page import write_report_page

logger = logging.getLogger(__name__)

PENDING_METAFNAME = METAFNAME + ".partial"


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointer(Checkpointer):
    """A SpeechBrain ``Checkpointer`` whose checkpoints appear only once they are complete.

    SpeechBrain's own checkpointer writes a checkpoint's ``CKPT.yaml`` first and the parameter
    files after it, so a run killed while saving leaves a folder that looks complete but holds a
    truncated file, and resuming from it fails (``EOFError`` in ``torch.load``). Here the meta
    file is written under a temporary name, every file is flushed to disk, and only then is the
    meta file renamed (atomically) to ``CKPT.yaml``: a folder without it is never loaded, and
    such leftovers of an interrupted save are deleted before the next recovery.

    Arguments are those of ``speechbrain.utils.checkpoints.Checkpointer``.

    Example
    -------
    >>> import tempfile
    >>> layer = torch.nn.Linear(2, 2)
    >>> checkpointer = AtomicCheckpointer(tempfile.mkdtemp(), {"layer": layer})
    >>> ckpt = checkpointer.save_checkpoint()
    >>> sorted(path.name for path in ckpt.path.iterdir())
    ['CKPT.yaml', 'layer.ckpt']
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending_meta = None

    def _save_checkpoint_metafile(self, fpath, meta_to_include=None, end_of_epoch=True):
        pending = Path(fpath).with_name(PENDING_METAFNAME)
        meta = super()._save_checkpoint_metafile(pending, meta_to_include or {}, end_of_epoch)
        self._pending_meta = (pending, Path(fpath))
        return meta

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO):
        self._pending_meta = None
        checkpoint = super().save_checkpoint(meta or {}, end_of_epoch, name, verbosity)
        ddp_barrier()  # every process has written its files
        if self._pending_meta is not None:
            pending, final = self._pending_meta
            for path in pending.parent.iterdir():
                _fsync(path)
            os.replace(pending, final)
            _fsync(final.parent)
            self._pending_meta = None
        return checkpoint

    def discard_partial_checkpoints(self):
        """Delete checkpoint folders left incomplete by an interrupted save; return their paths.

        Example
        -------
        >>> import tempfile
        >>> checkpointer = AtomicCheckpointer(tempfile.mkdtemp(), {})
        >>> (checkpointer.checkpoints_dir / "CKPT+interrupted").mkdir()
        >>> [path.name for path in checkpointer.discard_partial_checkpoints()]
        ['CKPT+interrupted']
        """
        discarded = []
        if not self.checkpoints_dir.is_dir():
            return discarded
        for path in sorted(self.checkpoints_dir.iterdir()):
            if path.is_dir() and path.name.startswith(CKPT_PREFIX):
                if not (path / METAFNAME).exists():
                    logger.warning("Deleting %s: its save was interrupted", path)
                    shutil.rmtree(path)
                    discarded.append(path)
        return discarded

    def recover_if_possible(self, *args, **kwargs):
        if if_main_process():
            self.discard_partial_checkpoints()
        ddp_barrier()
        return super().recover_if_possible(*args, **kwargs)


@register_checkpoint_hooks
class RandomState:
    """Saves and restores the Python, NumPy and torch random generators with a checkpoint.

    Put it among the checkpointer's recoverables: a run resumed from a checkpoint then draws the
    same augmentations, dropout masks and shuffles as a run that was never interrupted.

    Example
    -------
    >>> import tempfile, os
    >>> state = RandomState()
    >>> path = os.path.join(tempfile.mkdtemp(), "rng.ckpt")
    >>> state.save(path)
    >>> first = torch.rand(3)
    >>> state.load(path, end_of_epoch=True)
    >>> torch.equal(torch.rand(3), first)
    True
    """

    @mark_as_saver
    def save(self, path):
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        del end_of_epoch  # the state is restored whatever the checkpoint's position
        state = torch.load(path, weights_only=False)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ShardSampler(torch.utils.data.Sampler):
    """Items ``rank, rank + world_size, ...`` of a data set: each item on exactly one process.

    Unlike ``DistributedSampler`` nothing is padded or repeated, so metrics summed over the
    processes count every clip once.

    Example
    -------
    >>> [list(ShardSampler(5, rank, 2)) for rank in (0, 1)]
    [[0, 2, 4], [1, 3]]
    """

    def __init__(self, n_items: int, rank: int, world_size: int):
        self.indices = range(rank, n_items, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def all_reduce_sum(tensors):
    """Sums ``tensors`` in place over the processes of a distributed run (no-op otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for tensor in tensors:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensors


class DistributedRecipe:
    """Mixin for the recipes' ``Brain`` subclasses: what SpeechBrain's DDP needs from them.

    - Validation and test sets are split over the processes (``ShardSampler``: each clip once);
      ``reduced_error`` and ``InterpretationScoring`` sum the figures over the processes, so every
      process logs, selects checkpoints and writes from the same, complete figures.
    - On CPU (the gloo backend) modules are wrapped in DDP without SpeechBrain's conversion to
      ``SyncBatchNorm``, which works on GPUs only; each process then normalises its own batches.
    """

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loaders, with evaluation sets sharded over the processes under DDP.

        The training loader's number of batches is kept as ``n_train_batches`` (for schedules
        that follow the epoch's progress).
        """
        if stage != sb.Stage.TRAIN and self.distributed_launch:
            loader_kwargs = dict(loader_kwargs, shuffle=False)
            loader_kwargs["sampler"] = ShardSampler(
                len(dataset), torch.distributed.get_rank(), torch.distributed.get_world_size()
            )
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            self.n_train_batches = max(1, len(loader))
        return loader

    def reduced_error(self, error_metrics) -> float:
        """The average of a ``MetricStats`` of per-clip errors, over all processes' clips."""
        errors = [float(score) for score in error_metrics.scores]
        totals = torch.tensor([sum(errors), len(errors)], dtype=torch.float64, device=self.device)
        all_reduce_sum([totals])
        return float(totals[0] / totals[1]) if totals[1] else float("nan")

    def _wrap_distributed(self):
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )


class InterpretationScoring(DistributedRecipe):
    """Mixin for a ``Brain`` that scores interpretation masks (classifier and PIQ recipes alike).

    The ``Brain`` provides ``classify(log_spec) -> cosine scores`` and the hyperparameters
    ``class_names``, ``n_interpretations``, ``output_folder``, ``train_logger`` and
    ``epoch_counter``. Per stage: ``start_scoring()``, then ``score_masks(...)`` per batch, then
    ``interpretation_summary()`` or, on the test fold, ``write_test_results(...)``; under DDP
    the metrics are summed over the processes first (see ``DistributedRecipe``).
    """

    def start_scoring(self):
        """Fresh metrics (and no interpretation written yet) for a new stage."""
        names = self.hparams.class_names
        self.interp_metrics = MetricsAccumulator(len(names), class_names=names, device=self.device)
        self.metrics_scale = self.classifier_score_scale()  # the scale of ai, ad, ag, ff
        self.n_saved = 0
        self.eval_dtypes = {}  # what the stage's tensors really were (test_metrics.json)

    def note_dtype(self, name: str, tensor: torch.Tensor) -> None:
        """Records the dtype ``name`` was computed in (e.g. "bfloat16" under autocast)."""
        self.eval_dtypes.setdefault(name, str(tensor.dtype).removeprefix("torch."))

    @torch.no_grad()
    def score_masks(self, batch, log_spec, phase, mask, scores, n_samples, save=False):
        """Scores ``mask`` [B, T, F] on ``log_spec`` with ``interpreters.metrics``.

        With ``save``, the first ``n_interpretations`` clips of the stage are written as PNG and
        WAV under ``output_folder/interpretations`` (main process only).
        """

        def classify(masked_log_spec):
            masked_scores = self.classify(masked_log_spec)
            self.note_dtype("masked_scores", masked_scores)
            return masked_scores

        self.note_dtype("scores", scores)
        self.note_dtype("mask", mask)
        result = interpretation_scores(
            classify, log_spec, mask, scores=scores, score_scale=self.metrics_scale
        )
        labels = batch.label.to(self.device)
        self.interp_metrics.add_scores(labels, result)
        n_left = self.hparams.n_interpretations - self.n_saved
        if save and n_left > 0 and sb.utils.distributed.if_main_process():
            keep = slice(0, n_left)
            save_interpretations(
                os.path.join(self.hparams.output_folder, "interpretations"),
                batch.id[keep],
                log_spec[keep],
                phase[keep],
                mask[keep],
                result["x_int"][keep],
                labels[keep],
                result["pred"][keep],
                self.hparams.class_names,
                self.modules.features,
                length=n_samples,
                probabilities=torch.softmax(self.display_scale() * scores[keep].float(), dim=-1),
            )
            self.n_saved += len(batch.id[keep])
        return result

    def display_scale(self) -> float:
        """The scale of the cosine scores in displayed probabilities: the training loss's."""
        return self.classifier_score_scale()

    def classifier_score_scale(self) -> float:
        """The classifier's training scale ``k`` of ``softmax(k * cosine)``: the hparams'
        ``score_scale`` (L-MAC), else the loss's ``scale`` (the classifier recipe), else the
        ``score_scale`` of the frozen classifier run's ``model.json`` (PIQ).

        The suite's ``ai``, ``ad``, ``ag``, ``ff``, ``ff_mask_in`` are computed at this scale
        (``interpreters.metrics``) and ``test_metrics.json`` records it.
        """
        scale = getattr(self.hparams, "score_scale", None)
        for loss in ("loss_fn", "compute_cost"):  # the paper's recipes; the from-scratch ones
            if scale is None:
                scale = getattr(getattr(self.hparams, loss, None), "scale", None)
        folder = getattr(self.hparams, "classifier_folder", None)
        if scale is None and folder is not None:
            from recipes.loading import card_settings
            from recipes.runs import read_model_card

            scale = card_settings(read_model_card(folder))["score_scale"]
        if scale is None:
            raise ValueError(
                "no score_scale: give the hparams a score_scale, a loss_fn with a scale, or a "
                "classifier_folder whose model.json records one"
            )
        return float(scale)

    def interpretation_summary(self, **kwargs) -> dict:
        """``MetricsAccumulator.summary`` of the stage, over all processes (kwargs passed on).

        Call it once per stage, on every process (it sums the processes' metrics in place).
        """
        all_reduce_sum(self.interp_metrics.state_tensors())
        return self.interp_metrics.summary(**kwargs)

    def write_test_results(self, quantile, n_params, extra) -> dict:
        """Logs the test metrics; writes test_metrics.json and confusion_matrix.png.

        The JSON also records the label map (``labels``: label, target id and class name of each
        row of the confusion matrix), the ``score_scale`` of the scaled suite (``ai``, ``ad``,
        ``ag``, ``ff``, ``ff_mask_in``), the training and evaluation precision that ran, what the
        command asked for (``precision_requested``, ``eval_precision_requested``: e.g. ``auto``)
        and the dtypes the test stage's scores, maps and masks were really computed in
        (``eval_dtypes``).
        """
        labels = getattr(self.hparams, "labels", None) or default_labels(self.hparams.class_names)
        precisions = {
            "precision": self.precision,
            "eval_precision": self.eval_precision,
            # what the command asked for (``auto``: resolved by recipes.cli for the device)
            "precision_requested": getattr(self.hparams, "precision_requested", self.precision),
            "eval_precision_requested": getattr(
                self.hparams, "eval_precision_requested", self.eval_precision
            ),
            "eval_dtypes": dict(sorted(self.eval_dtypes.items())),
            # ai, ad, ag, ff, ff_mask_in are at this scale; fid_i, fa, fa_mask_in, *_unscaled at 1
            "score_scale": self.metrics_scale,
        }
        summary = self.interpretation_summary(
            quantile=quantile, n_params=n_params, extra={**extra, **precisions, "labels": labels}
        )
        self.hparams.train_logger.log_stats(
            stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
            test_stats={
                key: summary[key] for key in ("acc", "fid_i", "fa", "fa_mask_in", "n_clips")
            },
        )
        if sb.utils.distributed.if_main_process():
            folder = self.hparams.output_folder
            write_metrics_json(summary, os.path.join(folder, "test_metrics.json"))
            save_confusion_matrix_png(
                summary["confusion_matrix"],
                self.hparams.class_names,
                os.path.join(folder, "confusion_matrix.png"),
            )
            write_report_page(folder)
        self.test_summary = summary
        return summary


def train_loader_options(options: dict, n_train: int) -> dict:
    """``options`` (a YAML's ``train_dataloader_options``) with ``drop_last`` set when the last
    training batch would hold a single clip, which BatchNorm cannot normalise in training mode.

    The data are shuffled every epoch, so a different clip is left out each time.

    Example
    -------
    >>> train_loader_options({"batch_size": 16, "shuffle": True}, 33)["drop_last"]
    True
    >>> "drop_last" in train_loader_options({"batch_size": 16}, 32)
    False
    """
    batch_size = int(options.get("batch_size", 1))
    if batch_size > 1 and n_train % batch_size == 1 and not options.get("drop_last"):
        logger.info(
            "%d training clips in batches of %d would leave a one-clip batch: dropping the "
            "last batch of each epoch (a different clip each time, the data are shuffled)",
            n_train,
            batch_size,
        )
        return {**options, "drop_last": True}
    return dict(options)
