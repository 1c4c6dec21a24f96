#!/bin/bash
# Evaluate a segmenter and a counter on the validation split of ../shared/data (StarDist example, DSB2018,
# BBBC005) beside both classical baselines (Otsu + watershed, CellProfiler's IdentifyPrimaryObjects), one
# `cellcount-train evaluate` run per data set, then on images unlike the training data (`training.robustness`:
# the StarDist example enlarged x1-x4; 20 DSB2018 validation images at x0.5, x1 and x3 and their empty fields;
# `training.few_nuclei`: 39 crops of 2-7 nuclei of the StarDist example enlarged x4 and x5).
# A candidate passes only if both parts hold: a model can gain on the validation split and still over-split
# enlarged images or find cells in empty fields (docs/RESULTS.md, "CPU fine-tunes"). The tables in
# docs/RESULTS.md come from this script.
# Usage (repository root, after make install):
#   bash docs/evaluate_bundled.sh [OUT]            # the bundled models; OUT defaults to runs/eval
#   SEGMENTER=runs/x/model.json COUNTER=runs/y/model.json bash docs/evaluate_bundled.sh runs/eval-candidate
#   SEGMENTER=none BASELINES= COUNTER=runs/y/model.json bash docs/evaluate_bundled.sh runs/y/eval   # a counter alone
#   (SEGMENTER=none still lets the bundled segmenter's probes choose the cell size; BASELINES defaults to both)
# Results: OUT/<data set>/report.md, OUT/robustness-{stardist,dsb2018}/*.md and OUT/few-nuclei-stardist/*.md;
# about 30 minutes on 2 CPU cores.
set -euo pipefail
. .venv/bin/activate
DATA=../shared/data
OUT=${1:-runs/eval}
SEGMENTER=${SEGMENTER:-cellcount_core/models/weights/nuclei-segmenter.json}
COUNTER=${COUNTER:-cellcount_core/models/weights/nuclei-counter.json}
BASELINES=${BASELINES-classical cellprofiler}
# shellcheck disable=SC2206  # BASELINES is a list of names
MODELS=(--segmenter "$SEGMENTER" --counter "$COUNTER" --baselines $BASELINES)
folder() {
  case $1 in
    stardist) echo $DATA/stardist_example ;;
    dsb2018) echo $DATA/dsb2018_fluo ;;
    bbbc005) echo $DATA/bbbc005 ;;
  esac
}
for dataset in stardist dsb2018 bbbc005; do
  mkdir -p "$OUT/$dataset"
  python -m training evaluate "${MODELS[@]}" \
    --dataset $dataset --data "$(folder $dataset)" --out "$OUT/$dataset" > "$OUT/$dataset.log" 2>&1
  echo "$dataset: $OUT/$dataset/report.md"
done
python -m training.robustness "${MODELS[@]}" --dataset stardist --data "$(folder stardist)" --scales 1 2 3 4 \
  --out "$OUT/robustness-stardist" > "$OUT/robustness-stardist.log" 2>&1
python -m training.robustness "${MODELS[@]}" --dataset dsb2018 --data "$(folder dsb2018)" --scales 0.5 1 3 \
  --limit 20 --out "$OUT/robustness-dsb2018" > "$OUT/robustness-dsb2018.log" 2>&1
python -m training.few_nuclei "${MODELS[@]}" --dataset stardist --data "$(folder stardist)" \
  --out "$OUT/few-nuclei-stardist" > "$OUT/few-nuclei-stardist.log" 2>&1
echo "robustness: $OUT/robustness-stardist/scales.md, $OUT/robustness-dsb2018/{scales,empty_fields}.md"
echo "a few nuclei enlarged x4 and x5: $OUT/few-nuclei-stardist/few_nuclei.md"
