#!/usr/bin/env python3
"""Where the time of a classifier training run goes (prints a table; not a test).

    python benchmarks/profile_training.py hparams/esc10_focalnet.yaml \
        --data_folder=../shared/data/ESC-10 --number_of_epochs=3 --json results/profile.json

Runs ``train_classifier.py`` itself (same YAML, same overrides, same ``Brain``; the run goes to
a temporary folder unless ``--output_folder`` is given) with a ``ClassifierBrain`` whose steps are
timed, and prints per epoch the seconds spent in each phase of training:

- ``load``: waiting for the next batch (reading the clips: decode and resample, or the resample
  cache; fitting to 5 s; collating);
- ``wave_augment``, ``features`` (log-spectrogram), ``spec_augment``, ``image`` (resize to
  224 x 224, normalisation), ``backbone`` (forward), ``head``, ``loss``;
- ``backward``, ``optimizer`` (unscaling, gradient clipping, AdamW step, zero_grad);
- ``other``: the rest of the training stage (progress bar, schedule, bookkeeping);

then the validation stage, logging and checkpointing, the test stage, and training clips/s
(training stage alone, and whole epochs: training + validation + checkpoint). The first epoch
includes warm-up, and without a resample cache entry, decoding and resampling. With
``--resample_cache`` pointing at an empty folder the first epoch shows the uncached cost.

Any option of the recipe can be given (``--precision=bf16``, ``--num_workers=2``, ...).

``--compare_formats`` then times training steps (image, forward, loss, backward, AdamW step) of
copies of the run's trained model on one training batch in four forms: fp32, channels_last
(NHWC memory layout of images and convolution weights), bf16 autocast, and both; from
interleaved repeats (``--pairs`` rounds, 30 by default, each in alternating order, after two
warm-up rounds),
median seconds per step and clips/s.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import speechbrain as sb
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train_classifier  # noqa: E402
from recipes.allocator import keep_freed_memory  # noqa: E402
from recipes.classifier import ClassifierBrain  # noqa: E402
from recipes.models import AudioClassifier  # noqa: E402

TRAIN_PHASES = (
    "load",
    "wave_augment",
    "features",
    "spec_augment",
    "image",
    "backbone",
    "head",
    "loss",
    "backward",
    "optimizer",
    "other",
)


class ProfiledClassifierBrain(ClassifierBrain):
    """``ClassifierBrain`` with each step of a training batch timed (``self.profile``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs = []  # one dict of seconds per phase and epoch
        self.current = None
        self.stage = None
        modules, hparams = self.modules, self.hparams
        self._time_method(modules.features, "forward", "features")
        self._time_method(modules.embedding_model, "image", "image")
        self._time_method(modules.embedding_model, "forward", "backbone")
        self._time_method(modules.classifier, "forward", "head")
        for name, phase in (
            ("augmentation", "wave_augment"),
            ("spec_augmentation", "spec_augment"),
            ("compute_cost", "loss"),
        ):
            step = getattr(hparams, name, None)
            if isinstance(step, torch.nn.Module):  # timed in place: its attributes stay
                self._time_method(step, "forward", phase)  # (the loss's scale: score_scale)
            elif step is not None:
                setattr(hparams, name, self._timed(step, phase))
        self._time_method(hparams.train_logger, "log_stats", "logging")
        self._time_method(self.checkpointer, "save_and_keep_only", "checkpoint")

    # ---------------------------------------------------------------- timing helpers ---
    def _sync(self):
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize(self.device)

    def _add(self, phase, seconds):
        if self.current is not None:
            self.current[phase] += seconds

    def _timed(self, function, phase):
        def timed(*args, **kwargs):
            if self.stage != sb.Stage.TRAIN and phase not in ("logging", "checkpoint"):
                return function(*args, **kwargs)
            self._sync()
            start = time.perf_counter()
            result = function(*args, **kwargs)
            self._sync()
            self._add(phase, time.perf_counter() - start)
            return result

        return timed

    def _time_method(self, owner, name, phase):
        setattr(owner, name, self._timed(getattr(owner, name), phase))

    # ------------------------------------------------------------- the Brain's steps ---
    def make_dataloader(self, dataset, stage, *args, **kwargs):
        loader = super().make_dataloader(dataset, stage, *args, **kwargs)
        if stage != sb.Stage.TRAIN:
            return loader
        self.train_dataset = dataset
        return TimedLoader(loader, self)

    def on_stage_start(self, stage, epoch=None):
        self.stage = stage
        if stage == sb.Stage.TRAIN:
            self.current = defaultdict(float)
            self.epochs.append(self.current)
            self.n_train_clips = 0
        elif stage == sb.Stage.TEST:
            self.current = None  # the test stage's logging is not an epoch's
        self._stage_start = time.perf_counter()
        super().on_stage_start(stage, epoch)

    def fit_batch(self, batch):
        self.n_train_clips += len(batch.id)
        return super().fit_batch(batch)

    def check_loss_isfinite(self, loss):
        super().check_loss_isfinite(loss)
        self._sync()
        self._backward_start = time.perf_counter()  # backward() follows

    def optimizers_step(self):
        self._sync()
        start = time.perf_counter()
        self._add("backward", start - self._backward_start)
        super().optimizers_step()
        self._sync()
        self._add("optimizer", time.perf_counter() - start)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stage_seconds = time.perf_counter() - self._stage_start
        if stage == sb.Stage.TRAIN:
            self.current["train_stage"] = stage_seconds
            self.current["train_clips"] = self.n_train_clips
        super().on_stage_end(stage, stage_loss, epoch)
        ended = time.perf_counter() - self._stage_start
        if stage == sb.Stage.TRAIN:
            measured = sum(self.current[phase] for phase in TRAIN_PHASES if phase != "other")
            self.current["other"] = stage_seconds - measured
            self.current["epoch"] = ended  # without validation folds: logging and checkpoint
        elif stage == sb.Stage.VALID:
            self.current["valid_stage"] = stage_seconds
            self.current["epoch"] += ended
        else:
            self.test_seconds = ended
        self.stage = None


class TimedLoader:
    """A training DataLoader whose waits for the next batch count as ``load``."""

    def __init__(self, loader, brain):
        self.loader, self.brain = loader, brain

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.brain._add("load", time.perf_counter() - start)
            yield batch


def summarise(brain) -> dict:
    """Per-epoch phases, and the steady state: the median over the epochs after the first."""
    epochs = [dict(epoch) for epoch in brain.epochs]
    steady = epochs[1:] or epochs
    keys = sorted({key for epoch in epochs for key in epoch})
    median = {key: statistics.median(epoch.get(key, 0.0) for epoch in steady) for key in keys}
    result = {
        "torch_threads": torch.get_num_threads(),
        "device": str(brain.device),
        "train_phases": list(TRAIN_PHASES),  # they add up to the training stage
        "epochs": epochs,
        "steady": median,
        "train_clips_per_s": median["train_clips"] / median["train_stage"],
        "test_seconds": getattr(brain, "test_seconds", None),
    }
    if "epoch" in median:
        result["epoch_clips_per_s"] = median["train_clips"] / median["epoch"]
    return result


def print_table(result: dict) -> None:
    epochs = result["epochs"]
    header = "phase (s)        " + " ".join(f"{f'epoch {i + 1}':>9s}" for i in range(len(epochs)))
    print(header + "    steady  share")
    rows = (*TRAIN_PHASES, "train_stage", "valid_stage", "logging", "checkpoint", "epoch")
    train = result["steady"]["train_stage"]
    for phase in rows:
        if not any(phase in epoch for epoch in epochs):
            continue
        values = " ".join(f"{epoch.get(phase, 0.0):9.3f}" for epoch in epochs)
        share = f"{100 * result['steady'][phase] / train:5.1f} %" if phase in TRAIN_PHASES else ""
        print(f"{phase:16s} {values} {result['steady'][phase]:9.3f}  {share}")
    print(f"threads {result['torch_threads']}, device {result['device']}")
    print(f"training clips/s (training stage): {result['train_clips_per_s']:.2f}")
    if "epoch_clips_per_s" in result:
        print(f"training clips/s (whole epoch):    {result['epoch_clips_per_s']:.2f}")
    if result["test_seconds"] is not None:
        print(f"test stage: {result['test_seconds']:.1f} s")


FORMATS = {
    "fp32": (False, False),
    "channels_last": (True, False),
    "bf16": (False, True),
    "bf16+channels_last": (True, True),
}


def compare_formats(brain, dataset, pairs: int = 30) -> dict:
    """Seconds per training step of the run's model in each of ``FORMATS`` (see the docstring)."""
    device = torch.device(brain.device)
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=16, shuffle=False)
    batch = next(iter(loader)).to(device)
    with torch.no_grad():
        log_spec, _ = brain.modules.features(batch.signal.data, with_phase=False)
    labels = batch.label.unsqueeze(1)

    def make_step(channels_last, bf16):
        model = AudioClassifier(
            copy.deepcopy(brain.hparams.embedding_model), copy.deepcopy(brain.hparams.classifier)
        ).train()
        if channels_last:  # the weights and the backbone's input image in NHWC
            model.embedding_model.to(memory_format=torch.channels_last)
            model.embedding_model.register_forward_pre_hook(
                lambda module, args: (args[0].contiguous(memory_format=torch.channels_last),)
            )
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                scores = model.scores(log_spec).unsqueeze(1)
                loss = brain.hparams.compute_cost(scores, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return step

    steps = {name: make_step(*form) for name, form in FORMATS.items()}
    for _ in range(2):  # warm-up
        for step in steps.values():
            step()
    seconds = {name: [] for name in steps}
    for index in range(pairs):
        order = list(steps) if index % 2 == 0 else list(reversed(steps))
        for name in order:
            start = time.perf_counter()
            steps[name]()
            seconds[name].append(time.perf_counter() - start)
    batch_size = len(batch.id)
    result = {}
    for name, times in seconds.items():
        median = statistics.median(times)
        result[name] = {
            "seconds_per_step": median,
            "spread": max(times) - min(times),
            "clips_per_s": batch_size / median,
        }
    return result


def print_formats(formats: dict) -> None:
    fp32 = formats["fp32"]["seconds_per_step"]
    print(f"{'form':20s} {'s/step':>8s} {'spread':>8s} {'clips/s':>8s} {'vs fp32':>8s}")
    for name, row in formats.items():
        speedup = fp32 / row["seconds_per_step"]
        print(
            f"{name:20s} {row['seconds_per_step']:8.3f} {row['spread']:8.3f} "
            f"{row['clips_per_s']:8.1f} {speedup:8.2f}"
        )


def _pop_option(argv: list[str], name: str, flag: bool = False):
    """Removes ``--name=value`` / ``--name value`` (``--name`` alone for a flag) from argv."""
    for index, arg in enumerate(argv):
        if arg == name or arg.startswith(name + "="):
            argv.pop(index)
            if flag:
                return True
            return arg.split("=", 1)[1] if "=" in arg else argv.pop(index)
    return False if flag else None


def main(argv=None):
    keep_freed_memory()  # as train_classifier.py (recipes.cli.run_main)
    argv = list(sys.argv[1:] if argv is None else argv)
    json_path = _pop_option(argv, "--json")
    formats = _pop_option(argv, "--compare_formats", flag=True)
    pairs = int(_pop_option(argv, "--pairs") or 30)
    with tempfile.TemporaryDirectory() as tmp:
        if not any(arg.startswith("--output_folder") for arg in argv):
            argv.append(f"--output_folder={tmp}/run")
        brain = train_classifier.main(argv, brain_class=ProfiledClassifierBrain)
        result = summarise(brain)
        result["argv"] = argv
        print_table(result)
        if formats:
            print(f"\ntraining step of the run's model, one batch, {pairs} interleaved rounds:")
            result["formats"] = compare_formats(brain, brain.train_dataset, pairs)
            print_formats(result["formats"])
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
