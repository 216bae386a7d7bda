#!/usr/bin/env python3
"""Every method's metrics in and out of distribution: clean, noisy and overlapped test clips.

    python ood_eval.py --model_folder=results/focalnet-esc50/1234 \
        --methods by_design random energy saliency gradcam piq lmac \
        --runs results/piq-focalnet-esc50/1234 results/lmac-focalnet-esc50/1234

Each test-fold clip is scored clean and overlapped with white noise or with a clip of another
class at the --conditions' SNRs (default: clean noise:12 noise:6 noise:0 mix:12 mix:6 mix:0; see
recipes/ood.py). Methods: --methods / --runs as in every study (recipes/method_args.py);
same-area masks at --quantile (default: the run's q), soft masks as they are. Metrics: ACC,
FID-I (Fid-In), FA (FF), FA mask-in, AI, AD, AG, SPS, COMP (interpreters/metrics.py). Writes
ood.csv (one row per condition and method) and ood.png under --output_folder (default
<model_folder>/ood).
"""

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from recipes.cli import run_main
from recipes.method_args import add_method_arguments, load_methods
from recipes.ood import DEFAULT_CONDITIONS, ood_rows, parse_condition
from recipes.outputs import save_ood_png, write_csv_rows, written_together
from recipes.report_page import refresh_run_page
from recipes.runs import RunFolderError, run_split_dataset


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="a classifier run")
    add_method_arguments(parser)
    parser.add_argument("--conditions", nargs="+", default=list(DEFAULT_CONDITIONS))
    parser.add_argument("--quantile", type=float, default=None, help="default: the run's q")
    parser.add_argument("--n_clips", type=int, default=None, help="default: the whole test fold")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument("--output_folder", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for condition in args.conditions:
        try:
            parse_condition(condition)
        except ValueError as error:
            parser.error(str(error))
    if args.quantile is not None and not 0 <= args.quantile < 1:
        parser.error(f"--quantile must lie in [0, 1), got {args.quantile}")
    return args


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    model, trained, methods = load_methods(args)
    dataset = run_split_dataset(args.model_folder, "test", args.data_folder)
    with dataset.output_keys_as(["signal", "label"]):
        items = list(dataset)[: args.n_clips]
    if not items:
        raise RunFolderError(f"the test fold of {args.model_folder} has no clips")
    waves = torch.stack([item["signal"] for item in items])
    labels = [int(item["label"]) for item in items]
    rows = ood_rows(
        model,
        waves,
        labels,
        args.conditions,
        args.quantile,
        methods,
        trained,
        args.batch_size,
        args.seed,
        progress=tqdm,
    )
    output = Path(args.output_folder or f"{args.model_folder}/ood")
    with written_together(output) as staging:
        write_csv_rows(rows, staging / "ood.csv")
        save_ood_png(rows, staging / "ood.png")
    for row in rows:
        print(
            f"{row['condition']:>9s} {row['method']:>9s}: ACC {row['acc']:.3f} "
            f"FID-I {row['fid_i']:.3f} FA {row['fa']:+.4f} AI {row['ai']:5.1f} "
            f"AD {row['ad']:6.2f} AG {row['ag']:6.2f} SPS {row['sps']:.3f} "
            f"COMP {row['comp']:.2f}"
        )
    print(f"wrote {output}/ood.csv and ood.png ({len(items)} clips)")
    if output.resolve() == (Path(args.model_folder) / "ood").resolve():
        refresh_run_page(output)  # the run's report.html shows the OOD table


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
