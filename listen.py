#!/usr/bin/env python3
"""Listen to interpretations: a local web app to explore them by ear, and a listening test.

    python listen.py --model_folder=results/focalnet-esc10/1234 --runs results/lmac-.../1234
    python listen.py --make_test=tests/pilot --model_folder=RUN --runs PIQ_RUN LMAC_RUN \
        --methods by_design lmac_hard piq_hard gradcam energy --n_clips=10 --quantile=0.9
    python listen.py --test=tests/pilot [--db=tests/pilot/answers.sqlite] [--model_folder=RUN]
    python listen.py --analyse=tests/pilot/answers.sqlite
    python listen.py --webmushra=tests/pilot --output_folder=webmushra_pilot

Serving (--model_folder and/or --test) binds 127.0.0.1:5000 by default (--host, --port) and
prints the pages' addresses and the experimenter's token (results page, CSV export).
--make_test writes a test folder (WAVs + test.json; the random same-area mask is the anchor, the
reference is also the hidden reference); --analyse writes the analysis next to the database;
--webmushra writes a webMUSHRA config and its WAVs. See recipes/README.md ("Listening").
"""

import argparse
import sys

from recipes.cli import run_main
from recipes.method_args import add_method_arguments
from recipes.runs import RunFolderError


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--make_test", metavar="FOLDER", help="build a listening test into FOLDER")
    modes.add_argument("--analyse", metavar="DB", help="analyse a listening-test database")
    modes.add_argument("--webmushra", metavar="FOLDER", help="export a test to webMUSHRA")
    parser.add_argument("--model_folder", help="run folder to explore (or to build a test from)")
    add_method_arguments(parser)
    parser.add_argument("--test", metavar="FOLDER", help="serve the listening test of FOLDER")
    parser.add_argument("--db", help="the test's SQLite file (default: FOLDER/answers.sqlite)")
    parser.add_argument("--n_clips", type=int, default=10, help="clips of a new test")
    parser.add_argument("--quantile", type=float, default=None, help="q of a new test's masks")
    parser.add_argument("--seed", type=int, default=0, help="clip choice, anchor, orders")
    parser.add_argument("--question", default=None, help="MUSHRA question; {class} is replaced")
    parser.add_argument("--ab", nargs=2, metavar="METHOD", help="add an A/B page per clip")
    parser.add_argument("--ab_question", default=None, help="A/B question; {class} is replaced")
    parser.add_argument("--output_folder", help="--analyse / --webmushra output folder")
    parser.add_argument("--webmushra_rate", type=int, default=48000, help="the browser's rate")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default local)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--token", default=None, help="experimenter token (default: random)")
    parser.add_argument("--cache_folder", default=None, help="explorer cache (default: in run)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.quantile is not None and not 0 <= args.quantile < 1:
        parser.error(f"--quantile must lie in [0, 1), got {args.quantile}")
    if args.make_test and not (args.model_folder and args.methods):
        parser.error("--make_test needs --model_folder and --methods")
    if args.make_test and args.n_clips < 1:
        parser.error(f"--n_clips must be >= 1, got {args.n_clips}")
    if args.webmushra and not args.output_folder:
        parser.error("--webmushra needs --output_folder")
    serving = not (args.make_test or args.analyse or args.webmushra)
    if serving and not (args.model_folder or args.test):
        parser.error("give --model_folder (explore) and/or --test (listening test), or a mode")
    return args


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    if args.make_test:
        from recipes.listening import stimuli

        test = stimuli.make_test(
            args.model_folder,
            args.methods,
            args.make_test,
            runs=args.runs,
            n_clips=args.n_clips,
            quantile=args.quantile,
            seed=args.seed,
            question=args.question or stimuli.DEFAULT_QUESTION,
            ab=args.ab,
            ab_question=args.ab_question or stimuli.DEFAULT_AB_QUESTION,
            device=args.device,
        )
        n_clips, q = len(test["clips"]), test["quantile"]
        print(f"test: {args.make_test}/test.json ({n_clips} clips, q = {q})")
        print(f"serve it: python listen.py --test={args.make_test}")
        return
    if args.analyse:
        from recipes.listening.analysis import analyse

        try:
            summary = analyse(args.analyse, args.output_folder)
        except (FileNotFoundError, ValueError) as error:
            raise RunFolderError(str(error)) from None
        print(f"kept {len(summary['kept'])} participant(s), excluded {len(summary['excluded'])}")
        if summary["scripted_participants"]:
            print(
                f"  {len(summary['scripted_participants'])} of them scripted "
                "(recipes.listening.scripted): these are not human results"
            )
        for row in summary["conditions"]:
            print(f"  {row['condition']:<24} n={row['n']:<4} mean={row['mean']:6.1f}")
        for path in summary["outputs"].values():
            print(f"  -> {path}")
        return
    if args.webmushra:
        from recipes.listening.stimuli import export_webmushra

        config = export_webmushra(args.webmushra, args.output_folder, args.webmushra_rate)
        print(f"webMUSHRA config: {config}")
        return
    serve(args)


def serve(args):
    from recipes.listening.app import create_app

    explorer = None
    if args.model_folder:
        from recipes.listening.explore import load_explorer

        explorer = load_explorer(args.model_folder, args.runs, args.cache_folder, args.device)
    try:
        app = create_app(explorer, args.test, args.db, args.token)
    except ValueError as error:
        raise RunFolderError(str(error)) from None
    base = f"http://{args.host}:{args.port}"
    if explorer:
        counts = f"{len(explorer.clips)} clips, {len(explorer.methods)} methods"
        print(f"explore: {base}/explore ({counts})")
    if args.test:
        database = app.config["DB"]
        print(f"listening test: {base}/test (answers in {database.path})")
        print(f"experimenter: {base}/results?token={app.config['TOKEN']}")
        print(f"export: {base}/export.csv?token={app.config['TOKEN']}")
    sys.stdout.flush()
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
