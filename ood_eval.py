#!/usr/bin/env python3
"""Every method's metrics in and out of distribution: clean, noisy and overlapped test clips.

    python ood_eval.py --model_folder=results/focalnet-esc50/1234 \
        --methods by_design random energy saliency gradcam piq lmac \
        --runs results/piq-focalnet-esc50/1234 results/lmac-focalnet-esc50/1234

--protocol next_other_class (the default): each test-fold clip is scored clean and overlapped
with white noise or with the next test clip of another class at the --conditions' SNRs (default:
clean noise:12 noise:6 noise:0 mix:12 mix:6 mix:0). --protocol authors (SpeechBrain's eval.py):
each validation-fold clip, overlapped twice, with two test-fold clips of any class drawn at random
or with two noise draws (default conditions: clean noise:6.02 mix:12.04, the authors' levels);
see recipes/ood.py. Methods: --methods / --runs as in every study (recipes/method_args.py);
same-area masks at --quantile (default: the run's q), soft masks as they are. Metrics: ACC,
FID-I (Fid-In), FA, FA mask-in, AI, AD, AG at scale 1 (*_unscaled) and AI, AD, AG, FF, FF
mask-in at the classifier's score_scale, SPS, COMP (interpreters/metrics.py). Writes ood.csv (one
row per condition and method; its protocol and score_scale columns say how) and ood.png under
--output_folder (default <model_folder>/ood; <model_folder>/ood_authors for --protocol authors).
"""

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from recipes.cli import run_main
from recipes.method_args import add_method_arguments, load_methods
from recipes.ood import (
    AUTHORS_CONDITIONS,
    DEFAULT_CONDITIONS,
    PROTOCOLS,
    ood_rows,
    parse_condition,
)
from recipes.outputs import save_ood_png, write_csv_rows, written_together
from recipes.report_page import refresh_run_page
from recipes.runs import RunFolderError, run_split_dataset


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="a classifier run")
    add_method_arguments(parser)
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="next_other_class",
        help="next_other_class: the test fold, the next clip of another class; authors: "
        "SpeechBrain's eval.py (the validation fold, two test-fold interferers of any class)",
    )
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=None,
        help=f"default: {' '.join(DEFAULT_CONDITIONS)} (authors: {' '.join(AUTHORS_CONDITIONS)})",
    )
    parser.add_argument("--quantile", type=float, default=None, help="default: the run's q")
    parser.add_argument(
        "--n_clips", type=int, default=None, help="default: the whole fold overlapped"
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument(
        "--output_folder",
        default=None,
        help="default: <model_folder>/ood (--protocol authors: <model_folder>/ood_authors)",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.conditions is None:
        authors = args.protocol == "authors"
        args.conditions = list(AUTHORS_CONDITIONS if authors else DEFAULT_CONDITIONS)
    for condition in args.conditions:
        try:
            parse_condition(condition)
        except ValueError as error:
            parser.error(str(error))
    if args.quantile is not None and not 0 <= args.quantile < 1:
        parser.error(f"--quantile must lie in [0, 1), got {args.quantile}")
    return args


def split_items(folder, split: str, data_folder=None) -> list[dict]:
    """The ``signal`` and ``label`` of every clip of a run's ``split`` fold; RunFolderError
    naming the fold when it has none."""
    dataset = run_split_dataset(folder, split, data_folder)
    with dataset.output_keys_as(["signal", "label"]):
        items = list(dataset)
    if not items:
        hint = (
            ": the authors' protocol overlaps the validation fold's clips; train with "
            "valid_folds, or use --protocol next_other_class"
            if split == "valid"
            else ""
        )
        raise RunFolderError(f"the {split} fold of {folder} has no clips{hint}")
    return items


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    model, trained, methods = load_methods(args)
    authors = args.protocol == "authors"
    items = split_items(args.model_folder, "valid" if authors else "test", args.data_folder)
    items = items[: args.n_clips]
    waves = torch.stack([item["signal"] for item in items])
    labels = [int(item["label"]) for item in items]
    pool = None
    if authors:  # the interferers: the test fold's clips, any class
        pool = torch.stack(
            [item["signal"] for item in split_items(args.model_folder, "test", args.data_folder)]
        )
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
        protocol=args.protocol,
        pool=pool,
    )
    # the authors' protocol does not overwrite the default one's results (nor the run's page)
    output = Path(
        args.output_folder or f"{args.model_folder}/{'ood_authors' if authors else 'ood'}"
    )
    with written_together(output) as staging:
        write_csv_rows(rows, staging / "ood.csv")
        save_ood_png(rows, staging / "ood.png")
    for row in rows:
        print(
            f"{row['condition']:>9s} {row['method']:>9s}: ACC {row['acc']:.3f} "
            f"FID-I {row['fid_i']:.3f} FA {row['fa']:+.4f} | at scale {row['score_scale']:g}: "
            f"AI {row['ai']:5.1f} AD {row['ad']:6.2f} AG {row['ag']:6.2f} FF {row['ff']:+.4f} | "
            f"at scale 1: AG {row['ag_unscaled']:6.2f} | SPS {row['sps']:.3f} "
            f"COMP {row['comp']:.2f}"
        )
    fold = "validation clips (authors' protocol)" if authors else "test clips"
    print(f"wrote {output}/ood.csv and ood.png ({len(items)} {fold})")
    if output.resolve() == (Path(args.model_folder) / "ood").resolve():
        refresh_run_page(output)  # the run's report.html shows the OOD table


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
