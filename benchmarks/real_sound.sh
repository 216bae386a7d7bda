#!/usr/bin/env bash
# The real-sound benchmark of the interpretation methods (issue 23): ESC-10's single split
# (folds 1-3 train, 4 validates, 5 tests), three seeds of the from-scratch FocalNet, each with its
# PIQ and L-MAC retrained, every method of the registry but L2I scored on the test fold with the
# whole suite at both scales (q = 0.9 for the hard masks). BACKBONE is focalnet (the default), vit
# (hparams/esc10_vit.yaml with its own PIQ and L-MAC overrides) or cnn14 (hparams/esc10_cnn14.yaml:
# no by-design map, so no by_design row; L2I trained and scored too, as on SpeechBrain's CNN14).
# Environment: SEEDS (default "1 2 3"), METHODS (a space-separated subset of the default list),
# CLASSIFIER_ARGS and METHOD_ARGS (extra arguments for train_classifier.py / every trained method's
# recipe, e.g. CLASSIFIER_ARGS=--number_of_epochs=20), STUDIES=0 (the suite only). Resumable:
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
    cnn14) classifier=hparams/esc10_cnn14.yaml
           piq_overrides=hparams/esc10_cnn14_piq.yaml lmac_overrides=hparams/esc10_cnn14_lmac.yaml ;;
    *) echo "real_sound.sh: BACKBONE must be focalnet, vit or cnn14, not '$backbone'" >&2; exit 2 ;;
esac
read -r -a seeds <<< "${SEEDS:-1 2 3}"

hard=(by_design random energy saliency integrated_gradients smoothgrad gradient_shap occlusion gradcam)
soft=(saliency_soft integrated_gradients_soft smoothgrad_soft gradient_shap_soft occlusion_soft gradcam_soft)
trained=(piq lmac piq_hard lmac_hard)
if [ "$backbone" = cnn14 ]; then  # no by-design map on CNN14; L2I as on SpeechBrain's CNN14
    hard=("${hard[@]:1}")
    trained+=(l2i l2i_hard)
fi
methods=("${hard[@]}" "${soft[@]}" "${trained[@]}")
if [ -n "${METHODS:-}" ]; then
    read -r -a methods <<< "$METHODS"
fi
# A trained method is trained where it (or its same-area variant) is scored.
declare -A overrides=([piq]="$piq_overrides" [lmac]="$lmac_overrides"
                      [l2i]="hparams/esc10_${backbone}_l2i.yaml")
train=() method_args=() runs=()
for name in piq lmac l2i; do
    if [[ " ${methods[*]} " == *" $name "* || " ${methods[*]} " == *" ${name}_hard "* ]]; then
        if [ ! -f "${overrides[$name]}" ]; then  # before hours of training, not after
            echo "real_sound.sh: $name on $backbone needs ${overrides[$name]}, which does not exist;" \
                 "leave $name out of METHODS or write that overrides file" >&2
            exit 2
        fi
        train+=("$name=hparams/${name}_$backbone.yaml")
        method_args+=("$name=--overrides_file=${overrides[$name]} ${METHOD_ARGS:-}")
        runs+=("$name")
    fi
done
trained_args=()
[ ${#train[@]} -eq 0 ] || trained_args=(--train "${train[@]}" --method_args "${method_args[@]}")

"$python" cross_validate.py "$classifier" --data_folder="$data" \
    --output_folder="$out" --folds 5 --seeds "${seeds[@]}" \
    "${trained_args[@]}" \
    --classifier_args="${CLASSIFIER_ARGS:-}" --methods "${methods[@]}"
cat "$out/cv_summary.md"

# The studies beyond the suite on each seed's run, every method as above (skipped where a run
# already holds them), then their mean +- std over the seeds (OUT/studies_summary.md, .csv).
# STUDIES=0 stops after the suite.
[ "${STUDIES:-1}" = 0 ] && exit 0
seed_runs=()
for seed in "${seeds[@]}"; do
    run="$out/fold5/seed$seed"
    seed_runs+=("$run")
    study=(--model_folder="$run" --methods "${methods[@]}")
    [ ${#runs[@]} -eq 0 ] || study+=(--runs "${runs[@]/#/$run/}")
    [ -f "$run/localisation/localisation_summary.csv" ] ||
        "$python" localisation.py "${study[@]}" --n_mixtures 40
    [ -f "$run/deletion_insertion/deletion_insertion_auc.csv" ] ||
        "$python" deletion_insertion.py "${study[@]}" --n_clips 32 --steps 10
    [ -f "$run/sanity_check/sanity_check.csv" ] ||
        "$python" sanity_check.py "${study[@]}" --n_clips 16
done
"$python" benchmarks/studies_over_seeds.py "${seed_runs[@]}" --output_folder "$out"
