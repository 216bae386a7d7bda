#!/usr/bin/env python3
"""Throughput and overhead figures of the recipes on the current device (prints; not a test).

    python benchmarks/benchmark.py [--device cuda:0] [--json results/benchmark.json]

Measures, for focalnet-base and vit-base with random weights (real sizes):
- data pipeline: clips/s from wav files (44.1 kHz) to the model's input, without and with the
  16 kHz resample cache;
- training: clips/s of one optimisation step at batch 16 (features, backbone, head, additive
  angular margin loss, clipping, Adam);
- inference: clips/s of a plain classification forward at batch 16;
- by-design interpretation overhead: (forward with map + map + upsample + quantile mask) time
  over plain forward time, the median of interleaved pairs (A B, B A, ...; ``--repeats`` pairs
  after two warm-up pairs), with its spread (max - min of the pair ratios);
- ViT's fused attention (SDPA) against the eager path, same weights, same run: inference and
  training time ratios eager / SDPA (``vit_sdpa_over_eager_infer`` / ``_train``: above 1 means
  SDPA is faster; the CPU training comparison uses batch 4);
- test-evaluation forwards per clip, counted through ``ClassifierBrain.evaluate``;
- PIQ interpreter training: clips/s (FocalNet-PIQ, full width; batch 6, or 1 on CPU, where
  batch 6 needs about 21 GB);
- peak memory (CUDA: max allocated; CPU: the process's peak resident set so far, which only
  grows from one figure to the next).

``--json PATH`` also writes the figures (keys include ``interp_overhead_focalnet``,
``interp_overhead_vit`` and their ``*_spread``, ``vit_sdpa_over_eager_infer``,
``vit_sdpa_over_eager_train``, ``eval_forwards_per_clip``, ``pipeline_over_train``, ``device``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import speechbrain as sb
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from speechbrain.utils.train_logger import FileTrainLogger

from data_prep.audio import ResampleCache, load_clip
from data_prep.synthetic import generate_synthetic_esc50
from interpreters.maps import quantile_mask, upsample_map
from interpreters.piq import PIQInterpreter, piq_grid, piq_loss, target_mask
from recipes.classifier import ClassifierBrain
from recipes.features import LogSpectrogram, to_image
from recipes.models import TINY_FOCALNET, AudioClassifier, build_embedder, build_head

BATCH = 16
CLIP_SAMPLES = 80000


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device, repeats=1, warmup=1):
    """Median seconds of ``function()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_ratio(numerator, denominator, device, pairs=7, warmup=2):
    """Median and spread of ``time(numerator) / time(denominator)`` over interleaved pairs.

    Both functions are warmed up, then timed in alternating order (A B, B A, A B, ...) so that
    slow drifts of the machine fall on both alike; each pair gives one ratio. Returns
    ``(median ratio, spread = max - min of the ratios, median seconds of the denominator)``.
    """
    for _ in range(warmup):
        numerator()
        denominator()
    synchronize(device)
    ratios, denominator_times = [], []
    for index in range(pairs):
        order = (numerator, denominator) if index % 2 == 0 else (denominator, numerator)
        seconds = {}
        for function in order:
            start = time.perf_counter()
            function()
            synchronize(device)
            seconds[function] = time.perf_counter() - start
        ratios.append(seconds[numerator] / seconds[denominator])
        denominator_times.append(seconds[denominator])
    return (
        statistics.median(ratios),
        max(ratios) - min(ratios),
        statistics.median(denominator_times),
    )


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def random_batch(device, batch=BATCH, seed=0):
    generator = torch.Generator().manual_seed(seed)
    wavs = torch.randn(batch, CLIP_SAMPLES, generator=generator)
    return (wavs / wavs.abs().amax(dim=1, keepdim=True)).to(device)


def bench_pipeline(folder: Path, features, device, batch=BATCH):
    """Clips/s from files to model input, without and with the resample cache."""
    paths = sorted((folder / "audio").glob("*.wav"))

    def run(cache):
        for start in range(0, len(paths), batch):
            wavs = torch.stack([load_clip(p, cache=cache) for p in paths[start : start + batch]])
            log_spec, _ = features(wavs.to(device), with_phase=False)
            to_image(log_spec)

    cache = ResampleCache(folder / "cache")
    no_cache = timed(lambda: run(None), device, repeats=1, warmup=0)
    run(cache)  # fills the cache
    with_cache = timed(lambda: run(cache), device, repeats=2, warmup=0)
    return {
        "pipeline_clips_per_s": len(paths) / no_cache,
        "pipeline_cached_clips_per_s": len(paths) / with_cache,
        "pipeline_n_clips": len(paths),
    }


def bench_backbone(kind, features, device, train_steps, repeats):
    embedder = build_embedder(kind, pretrained=False).to(device)
    head = build_head(embedder.embedding_size, 50).to(device)
    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    wavs = random_batch(device)
    targets = torch.randint(0, 50, (BATCH, 1), device=device)

    def make_train_step(embedder, head, batch=BATCH):
        params = [*embedder.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(params, lr=2e-4, weight_decay=2e-6)

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            log_spec, _ = features(wavs[:batch], with_phase=False)
            embedding = embedder(to_image(log_spec))["embedding"]
            loss = loss_fn(head(embedding.unsqueeze(1)), targets[:batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()

        return train_step

    embedder.train(), head.train()
    train_s = timed(make_train_step(embedder, head), device, repeats=train_steps)
    embedder.eval(), head.eval()
    log_spec, _ = features(wavs, with_phase=False)
    image = to_image(log_spec)

    def make_plain(embedder):
        @torch.no_grad()
        def plain():
            embedding = embedder(image)["embedding"]
            return head(embedding.unsqueeze(1))

        return plain

    @torch.no_grad()
    def interpretation():
        out = embedder(image, with_map=True)
        head(out["embedding"].unsqueeze(1))
        return quantile_mask(upsample_map(out["by_design_map"], log_spec.shape[1:]), 0.9)

    ratio, spread, plain_s = paired_ratio(interpretation, make_plain(embedder), device, repeats)
    figures = {
        f"train_clips_per_s_{kind}": BATCH / train_s,
        f"inference_clips_per_s_{kind}": BATCH / plain_s,
        f"interp_overhead_{kind}": ratio,
        f"interp_overhead_{kind}_spread": spread,
    }
    if kind == "vit":  # the same weights on the eager attention path, in the same run
        eager = copy.deepcopy(embedder)
        eager.backbone.config._attn_implementation = "eager"
        ratio, spread, _ = paired_ratio(make_plain(eager), make_plain(embedder), device, repeats)
        figures.update(vit_sdpa_over_eager_infer=ratio, vit_sdpa_over_eager_infer_spread=spread)
        eager.train(), embedder.train()
        eager_head = copy.deepcopy(head)
        batch = BATCH if device.type == "cuda" else 4  # a full-batch step takes ~10 s on 2 cores
        ratio, spread, _ = paired_ratio(
            make_train_step(eager, eager_head, batch),
            make_train_step(embedder, head, batch),
            device,
            max(3, repeats // 2),
            warmup=1,
        )
        figures.update(vit_sdpa_over_eager_train=ratio, vit_sdpa_over_eager_train_spread=spread)
        figures["vit_sdpa_over_eager_train_batch"] = batch
        embedder.eval()
    figures[f"peak_memory_mb_{kind}"] = peak_memory_mb(device)
    return figures


def count_eval_forwards(folder: Path, device):
    """Clip-forwards per test clip of ClassifierBrain.evaluate (tiny model, same code path)."""
    from data_prep.audio import make_datasets
    from data_prep.esc50 import prepare_esc50

    manifests = prepare_esc50(folder, folder / "manifests", [1], [4], [5], url="", download=False)
    test = make_datasets({"test": manifests["test"]}, folder)["test"]
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
    rows = []
    embedder.register_forward_hook(lambda module, inputs, output: rows.append(len(inputs[0])))
    class_names = [f"class_{i:02d}" for i in range(8)]
    hparams = {
        "compute_cost": LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30)),
        "augmentation": None,
        "error_stats": lambda: sb.utils.metric_stats.MetricStats(
            metric=functools.partial(sb.nnet.losses.classification_error, reduction="batch")
        ),
        "embedding_model": embedder,
        "quantile": 0.9,
        "n_interpretations": 0,
        "class_names": class_names,
        "output_folder": str(folder / "eval"),
        "train_logger": FileTrainLogger(folder / "eval_log.txt"),
        "epoch_counter": sb.utils.epoch_loop.EpochCounter(1),
    }
    (folder / "eval").mkdir(exist_ok=True)
    brain = ClassifierBrain(
        modules={
            "features": LogSpectrogram(),
            "embedding_model": embedder,
            "classifier": build_head(embedder.embedding_size, len(class_names)),
        },
        hparams=hparams,
        run_opts={"device": str(device)},
    )
    brain.evaluate(test, test_loader_kwargs={"batch_size": BATCH}, progressbar=False)
    return {"eval_forwards_per_clip": sum(rows) / len(test)}


def bench_piq(features, device, batch):
    embedder = build_embedder("focalnet", pretrained=False).to(device).eval()
    model = AudioClassifier(embedder, build_head(embedder.embedding_size, 50)).to(device).eval()
    interpreter = PIQInterpreter(embedder.embedding_size, 50).to(device).train()
    optimizer = torch.optim.Adam(interpreter.parameters(), lr=2e-4, weight_decay=2e-6)
    wavs = random_batch(device, batch)

    def step():
        optimizer.zero_grad(set_to_none=True)
        log_spec, _ = features(wavs, with_phase=False)
        with torch.no_grad():
            out = model(log_spec)
            grid = piq_grid(out["grid"])
        result = interpreter(grid, out["scores"].argmax(dim=1))
        piq_loss(result, target_mask(log_spec))["total"].backward()
        optimizer.step()

    seconds = timed(step, device, repeats=1)
    return {
        "piq_train_clips_per_s": batch / seconds,
        "piq_batch_size": batch,
        "peak_memory_mb_piq": peak_memory_mb(device),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--train_steps", type=int, default=2, help="timed training steps")
    parser.add_argument(
        "--repeats", type=int, default=7, help="interleaved pairs per ratio (after warm-up)"
    )
    parser.add_argument("--piq_batch_size", type=int, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    piq_batch = args.piq_batch_size or (6 if device.type == "cuda" else 1)
    torch.manual_seed(0)
    features = LogSpectrogram().to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    figures = {
        "device": f"{device.type}: {name or platform.machine()}",
        "torch_threads": torch.get_num_threads(),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "esc50"
        generate_synthetic_esc50(folder, n_classes=8, clips_per_class_per_fold=2, folds=(1, 4, 5))
        print("data pipeline ...", flush=True)
        figures.update(bench_pipeline(folder, features, device))
        print("evaluation forwards ...", flush=True)
        figures.update(count_eval_forwards(folder, device))
    for kind in ("focalnet", "vit"):
        print(f"{kind}-base ...", flush=True)
        figures.update(bench_backbone(kind, features, device, args.train_steps, args.repeats))
    print(f"PIQ (batch {piq_batch}) ...", flush=True)
    figures.update(bench_piq(features, device, piq_batch))
    figures["pipeline_over_train"] = (
        figures["pipeline_cached_clips_per_s"] / figures["train_clips_per_s_focalnet"]
    )
    figures["pipeline_uncached_over_train"] = (
        figures["pipeline_clips_per_s"] / figures["train_clips_per_s_focalnet"]
    )
    figures["benchmark_seconds"] = time.perf_counter() - started
    print()
    for key, value in figures.items():
        print(f"{key:34s} {value:.3f}" if isinstance(value, float) else f"{key:34s} {value}")
    targets = [
        ("interp_overhead_focalnet", "<=", 1.05),
        ("interp_overhead_vit", "<=", 1.05),
        ("eval_forwards_per_clip", "<=", 3.0),
        ("pipeline_over_train", ">=", 5.0),
    ]
    print()
    for key, op, bound in targets:
        met = figures[key] <= bound if op == "<=" else figures[key] >= bound
        print(f"target {key} {op} {bound}: {figures[key]:.3f} ({'met' if met else 'NOT met'})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
