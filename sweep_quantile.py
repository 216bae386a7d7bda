#!/usr/bin/env python3
"""Sweep the quantile order q of same-area interpretations on the test fold (paper, Fig. 3).

    python sweep_quantile.py --model_folders results/focalnet-esc50/1234 results/vit-esc50/1234 \
        --methods by_design random energy saliency gradcam piq \
        --runs results/piq-focalnet-esc50/1234 --output_folder results/figures

Each classifier run gets <run>/quantile_sweep.csv (method, q, fid_i, fa, fa_mask_in, ai, ad, ag,
sps, comp, acc, n_clips, edge shares); the output folder gets quantile_sweep.csv (all runs) and
quantile_sweep.png (FID-I and FA against q). Same-area methods are thresholded at every q; soft
masks (PIQ, L-MAC runs) have no q and are drawn as horizontal lines. --methods / --runs as in every
study (recipes/method_args.py); each run goes with the classifier it was trained on.

Quantiles: --quantiles 0.1 0.5 0.9, or --quantiles_file FILE.yaml (a YAML list, or a mapping
with a `quantiles` list); default 0.05, 0.10, ..., 0.95. Nothing is retrained.
"""

import argparse
import sys
from pathlib import Path

import speechbrain as sb
import yaml
from tqdm import tqdm

from interpreters.methods import METHODS
from recipes.backbones import BACKBONES
from recipes.cli import run_main
from recipes.loading import resolve_methods
from recipes.method_args import add_method_arguments
from recipes.outputs import save_quantile_sweep_png
from recipes.runs import RunFolderError, read_model_card, run_split_dataset
from recipes.sweep import check_quantiles, default_quantiles, sweep_quantiles, write_sweep_csv


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folders", nargs="+", required=True, help="classifier runs")
    add_method_arguments(parser)
    parser.add_argument("--quantiles", nargs="+", type=float, default=None)
    parser.add_argument("--quantiles_file", default=None, help="YAML list of quantiles")
    parser.add_argument("--output_folder", default="results/figures")
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    quantiles = args.quantiles
    if args.quantiles_file is not None:
        loaded = yaml.safe_load(Path(args.quantiles_file).read_text())
        quantiles = loaded["quantiles"] if isinstance(loaded, dict) else loaded
    try:
        args.quantiles = check_quantiles(quantiles or default_quantiles())
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    return args


def runs_by_classifier(runs, model_folders) -> dict:
    """Each run folder under the classifier (of ``model_folders``) it was trained on."""
    grouped = {folder: [] for folder in model_folders}
    resolved = {Path(folder).resolve(): folder for folder in model_folders}
    for run in runs:
        card = read_model_card(run)
        classifier = resolved.get(Path(card.get("classifier_folder", "")).resolve())
        if classifier is None:
            raise RunFolderError(f"{run} is not a trained method's run on any of --model_folders")
        grouped[classifier].append(run)
    return grouped


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    curves, references, rows = {}, {}, []
    grouped = runs_by_classifier(args.runs, args.model_folders)
    for folder in args.model_folders:
        model, trained, methods = resolve_methods(
            folder, args.methods, grouped[folder], args.device
        )
        dataset = run_split_dataset(folder, "test", args.data_folder)
        loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=args.batch_size)
        label = BACKBONES[model.backbone].label
        print(f"{folder}: {len(dataset)} test clips x {len(args.quantiles)} quantiles")
        sweep = sweep_quantiles(
            model, tqdm(loader, desc=label), args.quantiles, methods, trained, args.seed
        )
        write_sweep_csv(sweep, Path(folder) / "quantile_sweep.csv", extra_columns=["method"])
        for method in methods:
            picked = [row for row in sweep if row["method"] == method]
            if METHODS[method].mask == "soft":
                name = f"{label}-{METHODS[method].label}"
                references[name] = picked[0]
            else:
                name = label if method == "by_design" else f"{label} {method}"
                curves[name] = picked
            rows += [{**row, "method": name} for row in picked]
    output = Path(args.output_folder)
    write_sweep_csv(rows, output / "quantile_sweep.csv", extra_columns=["method"])
    save_quantile_sweep_png(curves, output / "quantile_sweep.png", references)
    print(f"wrote {output / 'quantile_sweep.csv'} and {output / 'quantile_sweep.png'}")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
