"""Checkpoints that survive an interrupted save (recipes/training.py)."""

import pytest
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from recipes.training import AtomicCheckpointer


@register_checkpoint_hooks
class _DiesWhileSaving:
    """A recoverable whose save writes half a file, then fails like a process killed mid-save."""

    def __init__(self):
        self.die = False

    @mark_as_saver
    def save(self, path):
        if self.die:
            path.write_bytes(b"PK\x03\x04 truncated")
            raise KeyboardInterrupt("killed while saving")
        torch.save({"ok": True}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        torch.load(path)


def _checkpointer(folder, layer, dying):
    return AtomicCheckpointer(folder, {"layer": layer, "dying": dying})


def test_interrupted_save_is_invisible_and_the_previous_checkpoint_is_recovered(tmp_path):
    layer, dying = torch.nn.Linear(3, 2), _DiesWhileSaving()
    checkpointer = _checkpointer(tmp_path, layer, dying)
    complete = checkpointer.save_checkpoint(meta={"epoch": 1})
    saved_weight = layer.weight.detach().clone()

    with torch.no_grad():
        layer.weight.add_(1.0)
    dying.die = True
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save_checkpoint(meta={"epoch": 2})
    assert len(list(tmp_path.glob("CKPT+*"))) == 2  # the interrupted folder is on disk...
    assert [c.path for c in checkpointer.list_checkpoints()] == [complete.path]  # ...but unseen

    # A new process: recovery loads epoch 1 and deletes the interrupted folder.
    fresh_layer = torch.nn.Linear(3, 2)
    recovered = _checkpointer(tmp_path, fresh_layer, _DiesWhileSaving()).recover_if_possible()
    assert recovered.meta["epoch"] == 1
    assert torch.equal(fresh_layer.weight, saved_weight)
    assert list(tmp_path.glob("CKPT+*")) == [complete.path]


def test_complete_checkpoint_has_no_leftover_temporary_file(tmp_path):
    checkpointer = _checkpointer(tmp_path, torch.nn.Linear(2, 2), _DiesWhileSaving())
    checkpoint = checkpointer.save_checkpoint()
    assert sorted(p.name for p in checkpoint.path.iterdir()) == [
        "CKPT.yaml",
        "dying.ckpt",
        "layer.ckpt",
    ]
