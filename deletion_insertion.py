#!/usr/bin/env python3
"""Deletion and insertion curves of each method's ranking of the time-frequency cells.

    python deletion_insertion.py --model_folder=results/focalnet-esc50/1234 \
        --methods by_design random energy saliency gradcam piq \
        --runs results/piq-focalnet-esc50/1234

For the first --n_clips test clips, the predicted class's probability as the top-ranked share of
the cells is removed (deletion; lower area is better) or restored into an empty spectrogram
(insertion; higher area is better), in --steps steps. Each method ranks the cells by its map
(soft methods: by their mask). --methods / --runs as in every study (recipes/method_args.py).
Writes deletion_insertion_curves.csv, deletion_insertion_auc.csv and deletion_insertion.png under
--output_folder (default <model_folder>/deletion_insertion).
"""

import argparse
import sys
from pathlib import Path

from recipes.cli import run_main
from recipes.method_args import add_method_arguments, load_methods
from recipes.outputs import save_deletion_png, write_csv_rows, written_together
from recipes.studies import STUDIES, deletion_rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="a classifier run")
    add_method_arguments(parser)
    parser.add_argument("--n_clips", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument("--output_folder", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.steps < 1 or args.n_clips < 1:
        parser.error("--steps and --n_clips must be >= 1")
    model, trained, methods = load_methods(args)
    curves, areas = deletion_rows(
        model, args.model_folder, args.n_clips, args.steps, methods, trained, args.data_folder
    )
    files = STUDIES["deletion_insertion"]  # where studies_over_runs reads it
    output = Path(args.output_folder or Path(args.model_folder) / files.folder)
    with written_together(output) as staging:
        write_csv_rows(curves, staging / "deletion_insertion_curves.csv")
        write_csv_rows(areas, staging / files.summary)
        save_deletion_png(curves, areas, staging / "deletion_insertion.png")
    for row in areas:
        print(
            f"{row['method']:>9s}: deletion AUC {row['deletion_auc']:.4f}, "
            f"insertion AUC {row['insertion_auc']:.4f} ({row['n_clips']} clips)"
        )
    print(
        f"wrote {output}/deletion_insertion_curves.csv, deletion_insertion_auc.csv, "
        "deletion_insertion.png"
    )


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
