#!/usr/bin/env python3
"""What each interpretation method costs per clip: forwards, backwards and seconds.

    python benchmarks/method_costs.py [--batch 4] [--repeats 3] [--json results/method_costs.json]

Every method of the registry that needs no trained run (``interpreters.methods``) is computed for
a batch of random clips on the ESC-10 recipe's FocalNet (``hparams/esc10_focalnet.yaml``'s
architecture, random weights: the cost does not depend on the weights), with its counted
classifier forwards and backwards per clip (hooks on the backbone and the head) and the median
seconds per clip over ``--repeats`` runs. The printed table and the JSON name the CPU it ran on
(model, AVX-512 / bf16 instructions, threads).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interpreters.methods import METHODS, method_maps  # noqa: E402
from recipes.features import LogSpectrogram  # noqa: E402
from recipes.models import AudioClassifier, build_embedder, build_head  # noqa: E402

ESC10_FOCALNET = {"embed_dim": 32, "depths": [1, 1, 2, 1], "use_conv_embed": True}


def cpu_description() -> str:
    """E.g. 'AMD EPYC 9B14, AVX-512 with bf16, 2 threads' (from /proc/cpuinfo and torch)."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", "unknown CPU", "x86_64"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability()
    if "avx512f" in flags:
        kind = "AVX-512 with bf16" if "avx512_bf16" in flags else "AVX-512 without bf16"
    else:
        kind = "AVX2 only" if "avx2" in flags else "no AVX2"
    return f"{name}, {kind} (torch kernels: {isa}), {torch.get_num_threads()} threads"


def build_classifier():
    torch.manual_seed(0)
    embedder = build_embedder(
        "focalnet",
        pretrained=False,
        config_overrides=ESC10_FOCALNET,
        image_antialias=True,
        image_normalisation=(0.28, 0.42),
    )
    head = build_head(embedder.embedding_size, n_classes=10)
    return AudioClassifier(embedder, head).eval().requires_grad_(False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    classifier = build_classifier()
    counts = {"forwards": 0, "backwards": 0}
    classifier.embedding_model.register_forward_hook(
        lambda m, i, o: counts.__setitem__("forwards", counts["forwards"] + i[0].shape[0])
    )
    classifier.classifier.register_full_backward_hook(
        lambda m, gi, go: counts.__setitem__("backwards", counts["backwards"] + go[0].shape[0])
    )
    waves = torch.rand(args.batch, 80000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    log_spec, _ = LogSpectrogram()(waves, with_phase=False)
    cpu = cpu_description()
    rows = []
    for name, method in METHODS.items():
        if method.needs == "run" or method.base is not None:
            continue  # trained runs; variants cost what their base costs
        seconds = []
        for _ in range(args.repeats):
            counts.update(forwards=0, backwards=0)
            generator = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            method_maps(classifier, log_spec, [name], generator=generator)
            seconds.append((time.perf_counter() - start) / args.batch)
        rows.append(
            {
                "method": name,
                "forwards_per_clip": counts["forwards"] / args.batch,
                "backwards_per_clip": counts["backwards"] / args.batch,
                "seconds_per_clip": statistics.median(seconds),
            }
        )
        row = rows[-1]
        print(
            f"{name:>22s}: {row['forwards_per_clip']:6.1f} forwards, "
            f"{row['backwards_per_clip']:5.1f} backwards, "
            f"{row['seconds_per_clip']:7.3f} s per clip",
            flush=True,
        )
    print(f"(ESC-10 FocalNet, random weights, batch {args.batch}; {cpu}; the by-design forward is")
    print(" counted in every row: method_maps runs one shared forward first)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"cpu": cpu, "batch": args.batch, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
