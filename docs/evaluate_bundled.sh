#!/bin/bash
# Evaluate a segmenter and a counter on the validation split of ../shared/data (StarDist example, DSB2018,
# BBBC005) beside both classical baselines (Otsu + watershed, CellProfiler's IdentifyPrimaryObjects), one
# `cellcount-train evaluate` run per data set. The tables in docs/RESULTS.md come from this script.
# Usage (repository root, after make install):
#   bash docs/evaluate_bundled.sh [OUT]            # the bundled models; OUT defaults to runs/eval
#   SEGMENTER=runs/x/model.json COUNTER=runs/y/model.json bash docs/evaluate_bundled.sh runs/eval-candidate
# Results: OUT/<data set>/report.md; the BBBC005 run takes about 10 minutes on 2 CPU cores.
set -euo pipefail
. .venv/bin/activate
DATA=../shared/data
OUT=${1:-runs/eval}
SEGMENTER=${SEGMENTER:-cellcount_core/models/weights/nuclei-segmenter.json}
COUNTER=${COUNTER:-cellcount_core/models/weights/nuclei-counter.json}
for dataset in stardist dsb2018 bbbc005; do
  case $dataset in
    stardist) data=$DATA/stardist_example ;;
    dsb2018) data=$DATA/dsb2018_fluo ;;
    bbbc005) data=$DATA/bbbc005 ;;
  esac
  mkdir -p "$OUT/$dataset"
  python -m training evaluate --segmenter "$SEGMENTER" --counter "$COUNTER" --baselines classical cellprofiler \
    --dataset $dataset --data "$data" --out "$OUT/$dataset" > "$OUT/$dataset.log" 2>&1
  echo "$dataset: $OUT/$dataset/report.md"
done
