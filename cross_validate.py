#!/usr/bin/env python3
"""Train and evaluate over ESC-50's folds (and seeds); report mean +- std per method.

    python cross_validate.py hparams/focalnet.yaml --data_folder=/path/to/ESC-50 \
        --output_folder=results/cv-focalnet [--folds 1 2 3 4 5] [--seeds 1234 1235] \
        [--validation {previous,none}] \
        [--train piq=hparams/piq_focalnet.yaml lmac=hparams/lmac_focalnet.yaml] \
        [--methods by_design gradcam piq lmac ...] \
        [--classifier_args="..."] [--method_args "piq=..."] [-- overrides for every recipe ...]

For each test fold t (the fold before it validates, the other three train; with --validation=none
the other four train and the last epoch's model is tested: ESC-10's standard protocol) and seed s,
runs train_classifier.py into <output_folder>/fold<t>/seed<s> and, for each --train NAME=YAML, the
trained method's recipe (train_piq.py, train_lmac.py: the registry says which) into .../NAME,
skipping runs that already wrote test_metrics.json, so an interrupted cross-validation resumes.
Each run's test fold is then scored with every --methods entry (registry names, as in every study;
default: by_design and the trained methods) at the classifier's q, as sweep_quantile.py scores one
q, and kept in the run's cv_scores.csv. Writes cv_runs.csv (one row per run and method),
cv_summary.csv (mean and std of every metric per method), cv_summary.md (the same as two Markdown
tables: scaled suite, scale-1 suite) and cv_summary.png in the output folder.
Arguments after `--` go to every recipe run (e.g. `--number_of_epochs=50`); --classifier_args=
(a quoted string, given with "=") only to train_classifier.py, --method_args NAME="..." only to
the recipe of the trained method NAME.
"""

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from interpreters.methods import METHODS
from recipes.cli import run_main
from recipes.crossval import (
    ESC50_FOLDS,
    METRICS,
    aggregate,
    fold_split,
    score_run,
    summary_markdown,
)
from recipes.outputs import save_cv_png, write_csv_rows, written_together
from recipes.runs import RunFolderError, read_model_card

REPO = Path(__file__).resolve().parent


def run_recipe(script, hparams, output, extra):
    """Runs one recipe unless it already finished; exits with its message if it fails."""
    if (output / "test_metrics.json").is_file():
        print(f"{output}: done already")
        return
    print(f"{script} {hparams} -> {output}", flush=True)
    result = subprocess.run([sys.executable, str(REPO / script), hparams, *extra], cwd=REPO)
    if result.returncode != 0:
        raise RunFolderError(f"{script} failed for {output} (exit {result.returncode})")


def _named(values, what, parser) -> dict:
    """``NAME=VALUE`` strings as a dict (a parser error naming a malformed one)."""
    named = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            parser.error(f"{what} takes NAME=VALUE entries; got {value!r}")
        named[name] = rest
    return named


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
    trainable = [name for name, method in METHODS.items() if method.run and not method.base]
    parser.add_argument(
        "--train",
        nargs="+",
        default=[],
        metavar="NAME=YAML",
        help=f"trained methods to train on every run ({', '.join(trainable)}) and their YAML",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=None,
        metavar="METHOD",
        help="methods to score on every run (default: by_design and the --train ones)",
    )
    parser.add_argument("--classifier_args", default="", help="for train_classifier.py only")
    parser.add_argument(
        "--method_args", nargs="+", default=[], metavar="NAME=ARGS", help="for one recipe only"
    )
    parser.add_argument("--batch_size", type=int, default=16, help="of the scoring pass")
    parser.add_argument("--device", default="cpu", help="of the scoring pass")
    args = parser.parse_args(argv)
    train = _named(args.train, "--train", parser)
    method_args = _named(args.method_args, "--method_args", parser)
    for name in [*train, *method_args]:
        if name not in trainable:
            parser.error(f"{name} is not a trained method: choose among {', '.join(trainable)}")
    if train and args.validation == "none":
        parser.error("--train needs validation folds (trained methods select on validation)")
    output = Path(args.output_folder).resolve()
    rows = []
    for test_fold in args.folds:
        try:
            train_folds, valid, test = fold_split(test_fold, validate=args.validation == "previous")
        except ValueError as error:
            parser.error(str(error))
        for seed in args.seeds:
            run = output / f"fold{test_fold}" / f"seed{seed}"
            common = [
                f"--data_folder={args.data_folder}",
                f"--seed={seed}",
                f"--train_folds={train_folds}",
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
            method_runs = []
            for name, hparams in train.items():
                folder = run / name
                run_recipe(
                    METHODS[name].run.script,
                    hparams,
                    folder,
                    [
                        *common,
                        *shlex.split(method_args.get(name, "")),
                        f"--output_folder={folder}",
                        f"--classifier_folder={run}",
                    ],
                )
                method_runs.append(folder)
            scores = score_run(
                run, args.methods, method_runs, args.data_folder, args.batch_size, args.device
            )
            backbone = read_model_card(run)["backbone"]
            for row in scores:
                rows.append(
                    {
                        "fold": test_fold,
                        "seed": seed,
                        "backbone": backbone,
                        "method": row["method"],
                        "q": row["q"],
                        **{key: row[key] for key in METRICS},
                        "run": str(run),
                    }
                )
    summary = aggregate(rows)
    with written_together(output) as staging:
        write_csv_rows(rows, staging / "cv_runs.csv")
        write_csv_rows(summary, staging / "cv_summary.csv")
        save_cv_png(summary, staging / "cv_summary.png")
        (staging / "cv_summary.md").write_text(summary_markdown(summary))
    for entry in summary:
        print(
            f"{entry['method']:>22s} ({entry['n_runs']} runs): "
            + ", ".join(
                f"{metric} {entry[metric + '_mean']:.4f} +- {entry[metric + '_std']:.4f}"
                for metric in ("acc", "fid_i", "fa", "ai", "ag")
                if entry[metric + "_mean"] is not None
            )
        )
    print(f"wrote {output}/cv_runs.csv, cv_summary.csv, cv_summary.md, cv_summary.png")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
