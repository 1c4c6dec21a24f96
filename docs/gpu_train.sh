#!/bin/bash
# Train a bundled model from scratch on a lent GPU machine, within one device command (10 minutes at most).
# Usage, on the device, from the repository root: bash docs/gpu_train.sh segmenter|counter [MINUTES] [OPTION ...]
#   - data: ./shared/data, built here beforehand by docs/gpu_data.sh (it travels with the working tree);
#   - a run folder runs/gpu-<model> left on a still-warm machine by the call before is resumed (its checkpoint,
#     14 MB at width 16, does not fit beside the data in the 64 MiB a call carries, so a fresh machine starts over);
#   - the model, metrics.csv and curves.png are copied into $OUT when it is set, to come back;
#   - extra OPTIONs go to the train command last (they win), e.g. --steps-per-epoch 2 --epochs 1 for a smoke run.
# The device's python3 already holds torch, scikit-image, opencv and safetensors; nothing is installed there.
# Scoring needs no GPU: back here, bash docs/evaluate_bundled.sh with SEGMENTER/COUNTER set to the new model.
set -euo pipefail
MODEL=${1:?say segmenter or counter}
MINUTES=${2:-6}
shift $(( $# < 2 ? $# : 2 ))
RUN=runs/gpu-$MODEL
COMMON=(--data bbbc005=shared/data/bbbc005 --data dsb2018=shared/data/dsb2018_fluo --out "$RUN"
        --device "${DEVICE:-cuda}" --workers "${WORKERS:-12}" --crop-size 256 --crops-per-image 12 --batch-size 32
        --epochs 500 --time-limit "$MINUTES" --seed 0 --no-score)
[ -f "$RUN/checkpoint.pt" ] && COMMON+=(--resume)
case $MODEL in
  segmenter)
    NAME=nuclei-segmenter
    TRAIN=(train-segmenter --name $NAME --architecture small_unet --param base_filters="${WIDTH:-16}") ;;
  counter)
    NAME=nuclei-counter
    TRAIN=(train-counter --name $NAME --architecture density_counter --param base_filters="${WIDTH:-16}"
           --param depth=4 --lr 0.001 --count-weight 10) ;;
  *) echo "Unknown model '$MODEL': say segmenter or counter." >&2; exit 2 ;;
esac
PYTHONPATH=. "${PYTHON:-python3}" -m training "${TRAIN[@]}" "${COMMON[@]}" "$@"
if [ -n "${OUT:-}" ]; then
  cp "$RUN/$NAME.safetensors" "$RUN/$NAME.json" "$RUN/metrics.csv" "$RUN/curves.png" "$OUT/"
fi
