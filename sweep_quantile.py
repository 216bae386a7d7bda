#!/usr/bin/env python3
"""Sweep the quantile order q of by-design interpretations on the test fold (paper, Fig. 3).

    python sweep_quantile.py --model_folders results/focalnet-esc50/1234 results/vit-esc50/1234 \
        --piq_folders results/piq-focalnet-esc50/1234 --output_folder results/figures

Each classifier run gets <run>/quantile_sweep.csv (method, q, fid_i, fa, fa_mask_in, acc,
n_clips); the output folder gets quantile_sweep.csv (all runs) and quantile_sweep.png (FID-I and
FA against q, PIQ runs as horizontal lines read from their test_metrics.json).
--baselines random energy saliency adds same-area baseline masks of each classifier
(interpreters/baselines.py), thresholded at the same q values.
Quantiles: --quantiles 0.1 0.5 0.9, or --quantiles_file FILE.yaml (a YAML list, or a mapping
with a `quantiles` list); default 0.05, 0.10, ..., 0.95. Nothing is retrained.
"""

import argparse
import json
import sys
from pathlib import Path

import speechbrain as sb
import yaml
from tqdm import tqdm

from interpreters.baselines import BASELINES
from interpreters.outputs import save_quantile_sweep_png
from interpreters.sweep import check_quantiles, default_quantiles, sweep_quantiles, write_sweep_csv
from recipes.inference import AudioInterpreter
from recipes.runs import RunFolderError, read_model_card, run_split_dataset

LABELS = {"focalnet": "FocalNet", "vit": "ViT"}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folders", nargs="+", required=True, help="classifier runs")
    parser.add_argument("--piq_folders", nargs="*", default=[], help="PIQ runs (reference lines)")
    parser.add_argument("--quantiles", nargs="+", type=float, default=None)
    parser.add_argument("--quantiles_file", default=None, help="YAML list of quantiles")
    parser.add_argument("--output_folder", default="results/figures")
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument(
        "--baselines", nargs="*", choices=BASELINES, default=[], help="same-area baseline masks"
    )
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


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    curves, references, rows = {}, {}, []
    try:
        for folder in args.model_folders:
            model = AudioInterpreter.from_run(folder, method="by_design", device=args.device)
            dataset = run_split_dataset(folder, "test", args.data_folder)
            loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=args.batch_size)
            label = LABELS[model.kind]
            print(f"{folder}: {len(dataset)} test clips x {len(args.quantiles)} quantiles")
            batches = tqdm(loader, desc=label)
            sweep = sweep_quantiles(model, batches, args.quantiles, args.baselines, args.seed)
            write_sweep_csv(sweep, Path(folder) / "quantile_sweep.csv", extra_columns=["method"])
            for method in ["by_design", *args.baselines]:
                name = label if method == "by_design" else f"{label} {method}"
                curves[name] = [row for row in sweep if row["method"] == method]
                rows += [{**row, "method": name} for row in curves[name]]
        for folder in args.piq_folders:
            card = read_model_card(folder)
            if card.get("method") != "piq":
                raise RunFolderError(f"{folder} is not a train_piq.py run (model.json)")
            metrics = json.loads((Path(folder) / "test_metrics.json").read_text())
            references[f"{LABELS[metrics['backbone']]}-PIQ"] = metrics
    except (RunFolderError, FileNotFoundError) as error:
        sys.exit(f"sweep_quantile.py: {error}")
    output = Path(args.output_folder)
    write_sweep_csv(rows, output / "quantile_sweep.csv", extra_columns=["method"])
    save_quantile_sweep_png(curves, output / "quantile_sweep.png", references)
    print(f"wrote {output / 'quantile_sweep.csv'} and {output / 'quantile_sweep.png'}")


if __name__ == "__main__":
    main()
