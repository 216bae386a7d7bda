#!/usr/bin/env python3
"""Train and evaluate over ESC-50's folds (and seeds); report mean +- std per method.

    python cross_validate.py hparams/focalnet.yaml --data_folder=/path/to/ESC-50 \
        --output_folder=results/cv-focalnet [--folds 1 2 3 4 5] [--seeds 1234 1235] \
        [--validation {previous,none}] \
        [--piq_hparams hparams/piq_focalnet.yaml] [--classifier_args="..."] [--piq_args="..."] \
        [-- overrides for both recipes ...]

For each test fold t (the fold before it validates, the other three train; with --validation=none
the other four train and the last epoch's model is tested: ESC-10's standard protocol) and seed s,
runs
train_classifier.py into <output_folder>/fold<t>/seed<s> (and, with --piq_hparams, train_piq.py
into .../piq), skipping runs that already wrote test_metrics.json, so an interrupted
cross-validation resumes. Then writes cv_runs.csv (one row per run), cv_summary.csv (mean and
std of ACC, FID-I, FA, FA_mask_in per method) and cv_summary.png in the output folder.
Arguments after `--` go to every recipe run (e.g. `--number_of_epochs=50`); --classifier_args=
and --piq_args= (quoted strings, given with "=") only to train_classifier.py or train_piq.py.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from recipes.crossval import ESC50_FOLDS, METRICS, aggregate, fold_split
from recipes.outputs import save_cv_png, write_csv_rows, written_together
from recipes.report import method_label

REPO = Path(__file__).resolve().parent


def run_recipe(script, hparams, output, extra):
    """Runs one recipe unless it already finished; exits with its message if it fails."""
    if (output / "test_metrics.json").is_file():
        print(f"{output}: done already")
        return
    print(f"{script} {hparams} -> {output}", flush=True)
    result = subprocess.run([sys.executable, str(REPO / script), hparams, *extra], cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"cross_validate.py: {script} failed for {output} (exit {result.returncode})")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    argv, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hparams", help="classifier hparams, e.g. hparams/focalnet.yaml")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--folds", nargs="+", type=int, default=list(ESC50_FOLDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234])
    parser.add_argument(
        "--validation",
        choices=("previous", "none"),
        default="previous",
        help="previous: the fold before the test fold validates (default); none: train on the "
        "other four folds and test the last epoch's model",
    )
    parser.add_argument("--piq_hparams", default=None, help="also train PIQ on every run")
    parser.add_argument("--classifier_args", default="", help="for train_classifier.py only")
    parser.add_argument("--piq_args", default="", help="for train_piq.py only")
    args = parser.parse_args(argv)
    if args.piq_hparams and args.validation == "none":
        parser.error("--piq_hparams needs validation folds (PIQ selects on validation FID-I)")
    output = Path(args.output_folder).resolve()
    rows = []
    for test_fold in args.folds:
        try:
            train, valid, test = fold_split(test_fold, validate=args.validation == "previous")
        except ValueError as error:
            parser.error(str(error))
        for seed in args.seeds:
            run = output / f"fold{test_fold}" / f"seed{seed}"
            common = [
                f"--data_folder={args.data_folder}",
                f"--seed={seed}",
                f"--train_folds={train}",
                f"--valid_folds={valid}",
                f"--test_folds={test}",
                *extra,
            ]
            classifier_args = [
                *common,
                *shlex.split(args.classifier_args),
                f"--output_folder={run}",
            ]
            run_recipe("train_classifier.py", args.hparams, run, classifier_args)
            runs = [run]
            if args.piq_hparams:
                piq = run / "piq"
                run_recipe(
                    "train_piq.py",
                    args.piq_hparams,
                    piq,
                    [
                        *common,
                        *shlex.split(args.piq_args),
                        f"--output_folder={piq}",
                        f"--classifier_folder={run}",
                    ],
                )
                runs.append(piq)
            for folder in runs:
                metrics = json.loads((folder / "test_metrics.json").read_text())
                rows.append(
                    {
                        "fold": test_fold,
                        "seed": seed,
                        "method": method_label({**metrics, "quantile": None}),
                        **{key: metrics[key] for key in METRICS},
                        "run": str(folder),
                    }
                )
    summary = aggregate(rows)
    with written_together(output) as staging:
        write_csv_rows(rows, staging / "cv_runs.csv")
        write_csv_rows(summary, staging / "cv_summary.csv")
        save_cv_png(summary, staging / "cv_summary.png")
    for entry in summary:
        print(
            f"{entry['method']:>14s} ({entry['n_runs']} runs): "
            + ", ".join(
                f"{metric} {entry[metric + '_mean']:.4f} +- {entry[metric + '_std']:.4f}"
                for metric in METRICS
            )
        )
    print(f"wrote {output}/cv_runs.csv, cv_summary.csv, cv_summary.png")


if __name__ == "__main__":
    main()
