"""Pieces shared by the recipes' ``Brain`` subclasses (classifier and PIQ)."""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
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
