#!/usr/bin/env python3
"""Table 1 of the paper (Method, ACC, FID-I, FA, FA_mask_in, #Params) from finished runs,
with the faithfulness suite's AI, AD, AG, SPS and COMP.

    python report_table.py results/focalnet-esc50/1234 results/vit-esc50/1234 \
        results/piq-focalnet-esc50/1234 results/piq-vit-esc50/1234 \
        results/lmac-focalnet-esc50/1234 --output results/table1

Reads each run's test_metrics.json; writes <output>.md and <output>.csv and prints the table.

    python report_table.py --html results/focalnet-esc50/1234 [more folders]

(re)writes the report.html page of each folder (a run, or an interpret.py / mixture_demo.py
output folder), e.g. for runs made before pages existed, and prints their paths.
"""

import argparse
import sys

from recipes.cli import run_main
from recipes.report import (
    baseline_rows,
    markdown_table,
    read_run_metrics,
    table_rows,
    write_table,
)
from recipes.report_page import write_report_page


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run output folders (holding test_metrics.json)")
    parser.add_argument("--output", default="results/table1", help="path without extension")
    parser.add_argument(
        "--sweep", default=None, help="a sweep_quantile.py CSV: adds its baseline rows at --q"
    )
    parser.add_argument("--q", type=float, default=0.9, help="quantile of the baseline rows")
    parser.add_argument(
        "--html", action="store_true", help="write each folder's report.html instead of a table"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.html:
        for folder in args.runs:
            print(write_report_page(folder))
        return
    rows = table_rows([read_run_metrics(folder) for folder in args.runs])
    if args.sweep:
        rows += baseline_rows(args.sweep, args.q)
    write_table(rows, f"{args.output}.md", f"{args.output}.csv")
    print(markdown_table(rows), end="")
    print(f"wrote {args.output}.md and {args.output}.csv")


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
