#!/bin/bash
# Train a bundled model on a lent GPU machine within one device command of 8 minutes (the limit is 10).
# Usage, on the device, from the repository root: bash docs/gpu_train.sh segmenter|counter [MINUTES] [OPTION ...]
#   - data: ./shared/data, built here beforehand by docs/gpu_data.sh (it travels with the working tree); the
#     decoded images, targets and weight maps are then held in GPU memory and augmented there (no loader workers);
#   - MINUTES (default 5) of training plus the epoch in progress; reading the data and building the weight maps
#     takes about 2 minutes more, so the command ends within 8;
#   - a run folder runs/gpu-<model> left on a still-warm machine by the call before is resumed;
#   - the model, metrics.csv and curves.png are copied into $OUT when it is set, to come back;
#   - WIDTH (default 8, the bundled width) sets base_filters; extra OPTIONs go to the train command last (they
#     win), e.g. --init-from cellcount_core/models/weights/nuclei-segmenter to fine-tune, or --steps-per-epoch 2
#     --epochs 1 for a smoke run.
# The device's python3 already holds torch, scikit-image, opencv and safetensors; nothing is installed there.
# Scoring needs no GPU: back here, bash docs/evaluate_bundled.sh with SEGMENTER/COUNTER set to the new model,
# after `cellcount-train tune-threshold` (segmenter) or `cellcount-train calibrate-count` (counter).
set -euo pipefail
MODEL=${1:?say segmenter or counter}
MINUTES=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
RUN=runs/gpu-$MODEL
COMMON=(--data bbbc005=shared/data/bbbc005 --data dsb2018=shared/data/dsb2018_fluo --out "$RUN"
        --device "${DEVICE:-cuda}" --crop-size 256 --crops-per-image 12 --batch-size 32
        --epochs 1000 --lr-patience 10 --early-stop 40 --time-limit "$MINUTES" --seed 0 --no-score --ema 0.999)
[ -f "$RUN/checkpoint.pt" ] && COMMON+=(--resume)
case $MODEL in
  segmenter)
    NAME=nuclei-segmenter
    TRAIN=(train-segmenter --name $NAME --architecture small_unet --param base_filters="${WIDTH:-8}"
           --param depth=4) ;;
  counter)
    NAME=nuclei-counter
    TRAIN=(train-counter --name $NAME --architecture density_counter --param base_filters="${WIDTH:-8}"
           --param depth=4 --lr 0.001 --count-weight 10) ;;
  *) echo "Unknown model '$MODEL': say segmenter or counter." >&2; exit 2 ;;
esac
PYTHONPATH=. "${PYTHON:-python3}" -m training "${TRAIN[@]}" "${COMMON[@]}" "$@"
if [ -n "${OUT:-}" ]; then
  cp "$RUN/$NAME.safetensors" "$RUN/$NAME.json" "$RUN/metrics.csv" "$RUN/curves.png" "$OUT/"
fi
