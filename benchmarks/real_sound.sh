#!/usr/bin/env bash
# The real-sound benchmark of the interpretation methods (issue 23): ESC-10's single split
# (folds 1-3 train, 4 validates, 5 tests), three seeds of the from-scratch FocalNet, each with its
# PIQ and L-MAC retrained, every method of the registry but L2I scored on the test fold with the
# whole suite at both scales (q = 0.9 for the hard masks). BACKBONE is focalnet (the default) or
# vit: the ViT runs hparams/esc10_vit.yaml with its own PIQ and L-MAC overrides. Resumable:
# finished runs are skipped and scores already in a run's cv_scores.csv are read back. Prints and
# writes the mean +- std tables (OUT/cv_summary.md, .csv, .png; OUT/cv_runs.csv per seed). Then
# localisation (40 mixtures), deletion / insertion (32 clips, 10 steps) and the randomisation check
# (16 clips) of every method on each seed's run, and their mean +- std over the seeds
# (OUT/studies_summary.md, .csv; benchmarks/studies_over_seeds.py).
#
#     bash benchmarks/real_sound.sh [DATA_FOLDER] [OUTPUT_FOLDER] [BACKBONE]
#
# Defaults: ../shared/data/ESC-10, results/real-sound-BACKBONE and focalnet. FocalNet on a 2-core
# AVX2-only AMD EPYC (fp32): 1 h 57 min for training and scoring, then about 10 min per run for the
# studies (benchmarks/README.md gives the split by step, the AVX-512 time and the ViT's).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/ESC-10}"
backbone="${3:-focalnet}"
out="${2:-results/real-sound-$backbone}"
python="${PYTHON:-python}"
case "$backbone" in
    focalnet) classifier=hparams/esc10_focalnet.yaml
              piq_overrides=hparams/esc10_piq.yaml lmac_overrides=hparams/esc10_lmac.yaml ;;
    vit) classifier=hparams/esc10_vit.yaml
         piq_overrides=hparams/esc10_vit_piq.yaml lmac_overrides=hparams/esc10_vit_lmac.yaml ;;
    *) echo "real_sound.sh: BACKBONE must be focalnet or vit, not '$backbone'" >&2; exit 2 ;;
esac

hard=(by_design random energy saliency integrated_gradients smoothgrad gradient_shap occlusion gradcam)
soft=(saliency_soft integrated_gradients_soft smoothgrad_soft gradient_shap_soft occlusion_soft gradcam_soft)
trained=(piq lmac piq_hard lmac_hard)
methods=("${hard[@]}" "${soft[@]}" "${trained[@]}")

"$python" cross_validate.py "$classifier" --data_folder="$data" \
    --output_folder="$out" --folds 5 --seeds 1 2 3 \
    --train piq="hparams/piq_$backbone.yaml" lmac="hparams/lmac_$backbone.yaml" \
    --method_args piq=--overrides_file="$piq_overrides" \
        lmac=--overrides_file="$lmac_overrides" \
    --methods "${methods[@]}"
cat "$out/cv_summary.md"

# The studies beyond the suite on each seed's run, every method as above (skipped where a run
# already holds them), then their mean +- std over the seeds (OUT/studies_summary.md, .csv).
seed_runs=()
for seed in 1 2 3; do
    run="$out/fold5/seed$seed"
    seed_runs+=("$run")
    study=(--model_folder="$run" --methods "${methods[@]}" --runs "$run/piq" "$run/lmac")
    [ -f "$run/localisation/localisation_summary.csv" ] ||
        "$python" localisation.py "${study[@]}" --n_mixtures 40
    [ -f "$run/deletion_insertion/deletion_insertion_auc.csv" ] ||
        "$python" deletion_insertion.py "${study[@]}" --n_clips 32 --steps 10
    [ -f "$run/sanity_check/sanity_check.csv" ] ||
        "$python" sanity_check.py "${study[@]}" --n_clips 16
done
"$python" benchmarks/studies_over_seeds.py "${seed_runs[@]}" --output_folder "$out"
