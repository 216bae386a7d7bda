#!/usr/bin/env python3
"""Do interpretations point at the sound they name? Localisation on two-source mixtures.

    python localisation.py --model_folder=results/focalnet-esc50/1234 \
        --methods by_design random energy saliency gradcam piq \
        --runs results/piq-focalnet-esc50/1234

Mixes pairs of test-fold clips of different classes (--n_mixtures, default 20), predicts, and
scores each method's mask against the region of the source it names: the share of the mask
inside that region and the mask/region IoU. Regions are exact on the synthetic set and taken
from the separate sources' energy on real clips. --methods / --runs as in every study
(recipes/method_args.py). Writes localisation.csv (one row per mixture and method),
localisation_summary.csv and localisation.png under --output_folder (default
<model_folder>/localisation).
"""

import argparse
import sys
from pathlib import Path

from recipes.cli import run_main
from recipes.method_args import add_method_arguments, load_methods
from recipes.outputs import save_localisation_png, write_csv_rows, written_together
from recipes.runs import RunFolderError
from recipes.studies import STUDIES, localisation_rows, summarise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="a classifier run")
    add_method_arguments(parser)
    parser.add_argument("--n_mixtures", type=int, default=20)
    parser.add_argument("--quantile", type=float, default=None, help="default: the run's q")
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument("--output_folder", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    model, trained, methods = load_methods(args)
    rows = localisation_rows(
        model,
        args.model_folder,
        args.n_mixtures,
        args.quantile,
        methods,
        trained,
        args.data_folder,
    )
    if not rows:
        raise RunFolderError("the test fold has no two clips of different classes")
    summary = summarise(rows)
    files = STUDIES["localisation"]  # where studies_over_runs reads it
    output = Path(args.output_folder or Path(args.model_folder) / files.folder)
    with written_together(output) as staging:
        write_csv_rows(rows, staging / "localisation.csv")
        write_csv_rows(summary, staging / files.summary)
        save_localisation_png(summary, staging / "localisation.png")
    for row in summary:
        print(
            f"{row['method']:>9s}: share in region {row['share_in_region']:.3f}, "
            f"IoU {row['iou']:.3f} (chance share {row['chance_share']:.3f}, "
            f"{row['n_mixtures']} mixtures)"
        )
    print(f"wrote {output}/localisation.csv, localisation_summary.csv, localisation.png")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
