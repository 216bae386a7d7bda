#!/usr/bin/env python3
"""Localisation, deletion / insertion and the randomisation check, mean +- std over runs.

    python benchmarks/studies_over_seeds.py results/real-sound-vit/fold5/seed1 \
        results/real-sound-vit/fold5/seed2 results/real-sound-vit/fold5/seed3 \
        --output_folder results/real-sound-vit

Reads what ``localisation.py``, ``deletion_insertion.py`` and ``sanity_check.py`` wrote into
each classifier run (their default output folders; ``benchmarks/real_sound.sh`` runs them on
every seed) and writes ``studies_summary.csv`` (one row per study, method, level and figure:
mean, sample std, number of runs) and ``studies_summary.md`` (three tables) into
``--output_folder``, then prints the tables. A run without a study, or with other methods than
the first run, is refused with one line naming the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recipes.cli import run_main  # noqa: E402
from recipes.outputs import write_csv_rows, written_together  # noqa: E402
from recipes.studies import studies_markdown, studies_over_runs  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_folders", nargs="+", help="classifier runs (e.g. one per seed)")
    parser.add_argument("--output_folder", required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    summary = studies_over_runs(args.run_folders)
    markdown = studies_markdown(summary)
    output = Path(args.output_folder)
    with written_together(output) as staging:
        write_csv_rows(summary, staging / "studies_summary.csv")
        (staging / "studies_summary.md").write_text(markdown)
    print(markdown)
    print(f"wrote {output}/studies_summary.csv and studies_summary.md")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
