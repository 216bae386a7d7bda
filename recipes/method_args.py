"""The method arguments every study script takes, and what they resolve to.

``--methods NAME [NAME ...]`` (registry names, ``interpreters.methods``) and ``--runs DIR [DIR
...]`` (trained methods' runs: ``train_piq.py`` / ``train_lmac.py`` / ``train_l2i.py`` output
folders; each run's ``model.json`` names its method and its classifier, which must be the study's).
Default methods: the model folder's own (``by_design`` for a classifier run, its method for a
trained method's run) and the method of each run given.

Example
-------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_method_arguments(parser)
>>> args = parser.parse_args(["--methods", "by_design", "gradcam", "--runs", "a", "b"])
>>> args.methods, args.runs
(['by_design', 'gradcam'], ['a', 'b'])
"""

from __future__ import annotations

from interpreters.methods import METHODS
from recipes.loading import resolve_methods


def add_method_arguments(parser) -> None:
    """Adds ``--methods`` and ``--runs`` to an ``argparse`` parser."""
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=None,
        metavar="METHOD",
        help="interpretation methods: "
        + ", ".join(
            f"{m.name} ({m.mask}{', needs a run' if m.run else ''})" for m in METHODS.values()
        )
        + "; default: the model folder's own and those of --runs",
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        default=[],
        metavar="DIR",
        help="trained methods' run folders on this classifier ("
        + ", ".join(m.run.script for m in METHODS.values() if m.run)
        + ")",
    )


def load_methods(args, **released):
    """``(model, trained, methods)`` of parsed arguments with ``model_folder``, ``methods``,
    ``runs``, ``device`` and (optionally) ``quantile`` (``recipes.loading.resolve_methods``)."""
    return resolve_methods(
        args.model_folder,
        args.methods,
        args.runs,
        args.device,
        getattr(args, "quantile", None),
        **released,
    )
