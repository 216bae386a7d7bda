#!/usr/bin/env python3
"""Interpret any audio file with a trained model: top-5 classes, a PNG, a WAV and a JSON per method.

    python interpret.py --model_folder=results/focalnet-esc50/1234 --audio=dog.wav
    python interpret.py --model_folder=results/focalnet-esc50/1234 --audio=a.flac b.ogg \
        --methods by_design gradcam piq --runs results/piq-focalnet-esc50/1234 \
        --output_folder=interpretations/

--model_folder is the output folder of a train_classifier.py, train_piq.py, train_lmac.py or
train_l2i.py run, or a folder with the checkpoints SpeechBrain released for the paper
(embedding_model.ckpt, classifier.ckpt, label_encoder.txt). --methods / --runs as in every study
(recipes/method_args.py).
Outputs (<file>_<method>.png/.wav/.json) go under --output_folder (default:
<model_folder>/interpret/), with report.html: every file interpreted there, its top classes, the
picture and players for the original and the interpretation. Files of any length: read in blocks,
5 s windows interpreted a few at a time, the WAV written as it comes (memory does not grow with
the length); a file over a minute is drawn as one row a minute, with a progress bar.
"""

import argparse
import sys
from pathlib import Path

import yaml
from tqdm import tqdm

from data_prep.audio import AudioReadError
from recipes.backbones import BACKBONES
from recipes.cli import run_main
from recipes.inference import AudioInterpreter
from recipes.method_args import add_method_arguments, load_methods
from recipes.outputs import LONG_FILE_SECONDS, write_file_interpretation
from recipes.report_page import refresh_run_page, write_report_page


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="run folder or released model")
    parser.add_argument("--audio", required=True, nargs="+", help="audio file(s) to interpret")
    parser.add_argument("--quantile", type=float, default=None, help="q (same-area masks)")
    add_method_arguments(parser)
    parser.add_argument("--output_folder", default=None, help="default: <model_folder>/interpret")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backbone",
        choices=list(BACKBONES),
        default=None,
        help="released models only: default read from the checkpoint",
    )
    parser.add_argument(
        "--backbone_config",
        default=None,
        help="released models only: YAML dict of config overrides",
    )
    parser.add_argument(
        "--image_antialias",
        action="store_true",
        help="released models only: anti-aliased resize to 224x224 (torchvision >= 0.17's "
        "default; see the README's deviations)",
    )
    parser.add_argument(
        "--data_folder",
        default=None,
        help="released models without label_encoder.txt: an ESC-50 copy (label order)",
    )
    args = parser.parse_args(argv)
    if args.quantile is not None and not 0 <= args.quantile < 1:
        parser.error(f"--quantile must lie in [0, 1), got {args.quantile}")
    try:
        args.backbone_config = yaml.safe_load(args.backbone_config or "{}")
    except yaml.YAMLError as error:
        parser.error(f"--backbone_config is not a YAML mapping: {error}")
    if not isinstance(args.backbone_config, dict):
        parser.error(f"--backbone_config must be a YAML mapping, got {args.backbone_config!r}")
    return args


class Progress:
    """A progress bar (seconds of audio done) for files longer than a minute."""

    def __init__(self, name):
        self.name, self.bar = name, None

    def __call__(self, done, total):
        if total <= LONG_FILE_SECONDS:
            return
        if self.bar is None:
            self.bar = tqdm(total=round(total), desc=self.name, unit="s", file=sys.stderr)
        self.bar.update(round(done) - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    model, trained, methods = load_methods(
        args,
        backbone=args.backbone,
        backbone_config=args.backbone_config,
        data_folder=args.data_folder,
        image_antialias=args.image_antialias,
    )
    interpreters = [AudioInterpreter(model, method, trained) for method in methods]
    output_folder = args.output_folder or f"{args.model_folder}/interpret"
    failed = 0
    for path in args.audio:
        try:
            for interpreter in interpreters:
                with Progress(f"{Path(path).name} ({interpreter.method})") as progress:
                    summary = write_file_interpretation(
                        interpreter, path, output_folder, progress=progress
                    )
                print(f"{path} ({summary['duration_s']:.2f} s, {interpreter.method}):")
                for row in summary["top"]:
                    print(f"  {row['probability']:6.3f}  {row['class']}")
                print(f"  -> {', '.join(summary['outputs'].values())}")
        except AudioReadError as error:
            print(f"interpret.py: {error}", file=sys.stderr)
            failed += 1
    if failed < len(args.audio):
        print(f"  page: {write_report_page(output_folder)}")
        refresh_run_page(output_folder)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
