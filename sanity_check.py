#!/usr/bin/env python3
"""Randomisation sanity check (Adebayo et al., 2018): do the maps depend on the trained weights?

    python sanity_check.py --model_folder=results/focalnet-esc50/1234 \
        --methods by_design saliency energy gradcam [--runs PIQ_RUN] [--n_clips 16]

Compares, clip by clip (Spearman rank correlation), each method's map on the trained model with
its map on copies whose cosine head (`head`), or head and last backbone stage (`last_stage`),
are re-initialised; `none` (the same weights) is the reference and must give 1. A method whose
mean correlation stays above 0.9 after randomisation is flagged: its maps barely change.
--methods / --runs as in every study (recipes/method_args.py). Writes sanity_check.csv and
sanity_check.png under --output_folder (default <model_folder>/sanity_check).
"""

import argparse
import sys
from pathlib import Path

from recipes.cli import run_main
from recipes.method_args import add_method_arguments, load_methods
from recipes.outputs import save_sanity_png, write_csv_rows, written_together
from recipes.studies import STUDIES, sanity_rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="a classifier run")
    add_method_arguments(parser)
    parser.add_argument("--n_clips", type=int, default=16)
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument("--output_folder", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    model, trained, methods = load_methods(args)
    rows = sanity_rows(model, args.model_folder, args.n_clips, methods, trained, args.data_folder)
    files = STUDIES["sanity_check"]  # where studies_over_runs reads it
    output = Path(args.output_folder or Path(args.model_folder) / files.folder)
    with written_together(output) as staging:
        write_csv_rows(rows, staging / files.summary)
        save_sanity_png(rows, staging / "sanity_check.png")
    for row in rows:
        flag = "  <- barely changes" if row["barely_changes"] else ""
        print(
            f"{row['method']:>9s} {row['randomised']:>10s}: Spearman "
            f"{row['spearman_mean']:+.3f} +- {row['spearman_std']:.3f}{flag}"
        )
    print(f"wrote {output}/sanity_check.csv and sanity_check.png")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
