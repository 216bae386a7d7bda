#!/usr/bin/env python3
"""Peak memory and time of ``interpret.py``'s file path on long files (prints; not a test).

    python benchmarks/long_file.py [--minutes 10 60] [--config esc10] [--whole_minutes 10]
        [--json results/long_file.json]

For each length, a synthetic file (noise and tones, ``--sample_rate`` Hz mono 16-bit PCM,
written in blocks) is interpreted by ``recipes.outputs.write_file_interpretation`` (the file
read in blocks, windows streamed, the WAV appended as it comes) in a fresh subprocess, with
random weights: ``--config esc10`` is hparams/esc10_focalnet.yaml's FocalNet (32 channels,
anti-aliased image), ``tiny`` the tests' TINY_FOCALNET. Each subprocess reports its peak
resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes Python, torch and
the model: about 0.5 GB before any audio) and its wall time for the interpretation only.
``--whole_minutes`` also times the old whole-file path (``read_audio`` +
``AudioInterpreter.interpret_waveform`` + the full-width PNG) on a file of that length, the
figure the issue measured (3.7 GB for 10 minutes).

Timings are of the machine it runs on (print the CPU kind beside them): on a shared CPU they
are contended.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
import torch
from recipes.inference import AudioInterpreter
from recipes.loading import LoadedModel
from recipes.models import TINY_FOCALNET, AudioClassifier, build_embedder, build_head
from recipes.outputs import save_interpretation_png, save_wav, write_file_interpretation
from recipes.allocator import keep_freed_memory

keep_freed_memory()  # as interpret.py (recipes.cli.run_main)
torch.manual_seed(0)
if {config!r} == "esc10":  # the recipe's own model (random weights: pretrained is False)
    from hyperpyyaml import load_hyperpyyaml
    with open({repo!r} + "/hparams/esc10_focalnet.yaml") as handle:
        overrides = {{"data_folder": {out!r}, "output_folder": {out!r} + "/run", "n_classes": 10}}
        hparams = load_hyperpyyaml(handle, overrides)
    embedder, head = hparams["embedding_model"], hparams["classifier"]
else:
    embedder = build_embedder("focalnet", pretrained=False, config_overrides=TINY_FOCALNET)
    head = build_head(embedder.embedding_size, n_classes=10)
classifier = AudioClassifier(embedder, head).eval()
names = [f"class{{i}}" for i in range(10)]
model = AudioInterpreter(LoadedModel(classifier, names, "."), "by_design")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
if {whole!r}:
    from data_prep.audio import read_audio
    signal, rate = read_audio({path!r})
    result = model.interpret_waveform(signal, rate)
    save_interpretation_png(result["log_spec"], result["mask"], result["mask"] * result["log_spec"],
                            {out!r} + "/whole.png", None, result["top"][0][0])
    save_wav(result["interpretation_wave"], {out!r} + "/whole.wav")
    windows = result["n_windows"]
else:
    summary = write_file_interpretation(model, {path!r}, {out!r})
    windows = len(summary["windows"])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"windows": windows, "seconds": seconds, "peak_rss_mb": peak,
                   "rss_before_audio_mb": before}}))
"""


def write_long_file(path: Path, minutes: float, sample_rate: int) -> None:
    """Noise with a few tones, written a minute at a time (never whole in memory)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    block = 60 * sample_rate
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as f:
        for minute in range(int(np.ceil(minutes))):
            n = min(block, int(minutes * 60 * sample_rate) - minute * block)
            t = (minute * block + np.arange(n)) / sample_rate
            tone = 0.4 * np.sin(2 * np.pi * (300 + 40 * (minute % 50)) * t) * ((t % 20) < 8)
            f.write((0.05 * rng.standard_normal(n) + tone).astype(np.float32))


def cpu_kind() -> str:
    import torch

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return (
        f"{model or 'unknown CPU'}, ATen capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads"
    )


def run_child(path: Path, out: Path, config: str, whole: bool) -> dict:
    code = CHILD.format(repo=str(REPO), config=config, whole=whole, path=str(path), out=str(out))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--whole_minutes", type=float, nargs="*", default=[])
    parser.add_argument("--config", choices=["esc10", "tiny"], default="esc10")
    parser.add_argument("--sample_rate", type=int, default=44100)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    rows = []
    print(f"CPU: {cpu_kind()}; model: {args.config} FocalNet, random weights, by_design")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs = [(m, False) for m in args.minutes] + [(m, True) for m in args.whole_minutes]
        for minutes, whole in jobs:
            path = tmp / f"long_{minutes:g}min.wav"
            if not path.is_file():
                write_long_file(path, minutes, args.sample_rate)
            out = tmp / f"out_{minutes:g}_{int(whole)}"
            out.mkdir()
            figures = run_child(path, out, args.config, whole)
            row = {
                "minutes": minutes,
                "path": "whole file (old)" if whole else "streamed",
                "sample_rate": args.sample_rate,
                "config": args.config,
                **figures,
            }
            rows.append(row)
            print(
                f"{minutes:6g} min, {row['path']:>16}: {figures['windows']} windows, "
                f"{figures['seconds']:7.1f} s, peak RSS {figures['peak_rss_mb']:7.0f} MB "
                f"(before the audio {figures['rss_before_audio_mb']:.0f} MB)",
                flush=True,
            )
            shutil.rmtree(out)
            if not whole and (minutes, True) not in jobs:
                path.unlink()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"cpu": cpu_kind(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
