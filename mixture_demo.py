#!/usr/bin/env python3
"""Mix two sounds, predict and interpret the mixture (the paper's Fig. 2).

    python mixture_demo.py --model_folder=results/focalnet-esc50/1234
    python mixture_demo.py --model_folder=RUN --classes church_bells water_drops --mode concat
    python mixture_demo.py --model_folder=RUN --files a.wav b.flac --methods by_design gradcam

Sources: two files, or two class names whose first clips in the run's test fold are used
(default: church_bells + water_drops when the run has them, else its first two classes).
--mode spectral (paper: source 1 dominates the lower half of the spectrum, source 2 the upper)
or concat (authors' code: one after the other). For each method (--methods / --runs as in every
study), writes a 4-panel PNG (source 1, source 2, mixture, interpretation), the four WAVs and a
JSON under --output_folder (default <model_folder>/mixtures), with report.html (the four sources'
and the interpretation's players next to the picture).
"""

import argparse
import sys

from data_prep.audio import load_clip
from data_prep.mixing import MODES
from recipes.cli import run_main
from recipes.inference import AudioInterpreter
from recipes.method_args import add_method_arguments, load_methods
from recipes.outputs import write_mixture_interpretation
from recipes.report_page import refresh_run_page, write_report_page
from recipes.runs import first_test_clips

DEFAULT_CLASSES = ("church_bells", "water_drops")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="a training run's output folder")
    sources = parser.add_mutually_exclusive_group()
    sources.add_argument("--files", nargs=2, metavar="FILE", help="two audio files")
    sources.add_argument("--classes", nargs=2, metavar="CLASS", help="two classes of the test fold")
    parser.add_argument("--mode", choices=MODES, default="spectral")
    add_method_arguments(parser)
    parser.add_argument("--quantile", type=float, default=None)
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument("--output_folder", default=None)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    model, trained, methods = load_methods(args)
    if args.files:
        paths = args.files
        names = [path.rsplit("/", 1)[-1].rsplit(".", 1)[0] for path in args.files]
    else:
        paths, names = first_test_clips(
            args.model_folder, args.classes, DEFAULT_CLASSES, args.data_folder
        )
    sources = [load_clip(path) for path in paths]
    output = args.output_folder or f"{args.model_folder}/mixtures"
    for method in methods:
        summary = write_mixture_interpretation(
            AudioInterpreter(model, method, trained),
            sources[0],
            sources[1],
            names,
            output,
            mode=args.mode,
        )
        print(f"{names[0]} + {names[1]} ({args.mode}), {method}:")
        for row in summary["top"]:
            print(f"  {row['probability']:6.3f}  {row['class']}")
        print(f"  -> {summary['outputs']['png']}")
    print(f"  page: {write_report_page(output)}")
    refresh_run_page(output)


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
