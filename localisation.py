#!/usr/bin/env python3
"""Do interpretations point at the sound they name? Localisation on two-source mixtures.

    python localisation.py --model_folder=results/focalnet-esc50/1234 \
        --baselines random energy saliency --piq_folder=results/piq-focalnet-esc50/1234

Mixes pairs of test-fold clips of different classes (--n_mixtures, default 20), predicts, and
scores each method's mask against the region of the source it names: the share of the mask
inside that region and the mask/region IoU. Regions are exact on the synthetic set and taken
from the separate sources' energy on real clips. Writes localisation.csv (one row per mixture
and method), localisation_summary.csv and localisation.png under --output_folder (default
<model_folder>/localisation).
"""

import argparse
import csv
import sys
from pathlib import Path

from interpreters.baselines import BASELINES
from interpreters.outputs import save_localisation_png, written_together
from recipes.inference import AudioInterpreter, load_piq_of
from recipes.runs import RunFolderError
from recipes.studies import localisation_rows, summarise


def write_csv(rows, path):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_folder", required=True, help="a train_classifier.py run")
    parser.add_argument("--piq_folder", default=None, help="a train_piq.py run on that classifier")
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=[])
    parser.add_argument("--n_mixtures", type=int, default=20)
    parser.add_argument("--quantile", type=float, default=None, help="default: the run's q")
    parser.add_argument("--data_folder", default=None, help="default: the one in model.json")
    parser.add_argument("--output_folder", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        model = AudioInterpreter.from_run(args.model_folder, method="by_design", device=args.device)
        piq = None
        if args.piq_folder:
            piq = load_piq_of(args.model_folder, args.piq_folder, args.device)
        rows = localisation_rows(
            model,
            args.model_folder,
            args.n_mixtures,
            args.quantile,
            args.baselines,
            piq,
            args.data_folder,
        )
    except RunFolderError as error:
        sys.exit(f"localisation.py: {error}")
    if not rows:
        sys.exit("localisation.py: the test fold has no two clips of different classes")
    summary = summarise(rows)
    output = Path(args.output_folder or f"{args.model_folder}/localisation")
    with written_together(output) as staging:
        write_csv(rows, staging / "localisation.csv")
        write_csv(summary, staging / "localisation_summary.csv")
        save_localisation_png(summary, staging / "localisation.png")
    for row in summary:
        print(
            f"{row['method']:>9s}: share in region {row['share_in_region']:.3f}, "
            f"IoU {row['iou']:.3f} (chance share {row['chance_share']:.3f}, "
            f"{row['n_mixtures']} mixtures)"
        )
    print(f"wrote {output}/localisation.csv, localisation_summary.csv, localisation.png")


if __name__ == "__main__":
    main()
