#!/bin/bash
# The architecture and weight-map comparisons of c-ResUnet (Morelli et al. 2021) at the scale of a 2-core CPU.
# Every variant gets the same budget: 5 epochs x 40 steps of batch 4 (128 x 128 crops, 4 per image and epoch),
# seed 0, widths a quarter of each architecture's default, trained on the DSB2018 training split. The threshold
# is chosen by Kneedle on 40 training images, then each model is evaluated on the DSB2018 validation split
# beside the classical baseline. Last, DeepCellCount's regressor is trained on a segmenter's BBBC005 masks and
# counts masks made by the simple, adaptive and Otsu thresholds.
# Results: runs/repro/<variant>/eval/overall.md; tables in docs/RESULTS.md.
# Usage (repository root, after make install): bash docs/reproduce_papers.sh [variant ...]
set -euo pipefail
. .venv/bin/activate
DSB=../shared/data/dsb2018_fluo
OUT=runs/repro
COMMON=(--data dsb2018=$DSB --crop-size 128 --batch-size 4 --crops-per-image 4 --steps-per-epoch 40 --epochs 5
        --seed 0 --no-score)

variant() {  # name architecture width [extra training options]
  local name=$1 arch=$2 width=$3
  shift 3
  mkdir -p $OUT
  /usr/bin/time -f "$name trained in %e s" -a -o $OUT/times.txt \
    python -m training train-segmenter "${COMMON[@]}" --out $OUT/$name --name $name --architecture $arch \
    --param base_filters=$width "$@" > $OUT/$name.train.log 2>&1
  python -m training tune-threshold --model $OUT/$name/$name.json --dataset dsb2018 --data $DSB --split train \
    --limit 40 --out $OUT/$name/tune > $OUT/$name.tune.log 2>&1
  python -m training evaluate --segmenter $OUT/$name/$name.json --baselines classical --dataset dsb2018 \
    --data $DSB --out $OUT/$name/eval > $OUT/$name.eval.log 2>&1
}

dcc_counter() {  # DeepCellCount's regressor on a segmenter's masks (BBBC005), evaluated on three thresholds
  local segmenter=cellcount_core/models/weights/nuclei-segmenter
  /usr/bin/time -f "dcc_counter trained in %e s" -a -o $OUT/times.txt \
    python -m training train-counter --data bbbc005=../shared/data/bbbc005 --out $OUT/dcc_counter --name dcc_counter \
    --architecture dcc_counter --input mask --segmenter $segmenter --epochs 15 --time-limit 15 --seed 0 --no-score \
    > $OUT/dcc_counter.train.log 2>&1
  python -m training evaluate --segmenter $segmenter --counter $OUT/dcc_counter/dcc_counter.json \
    --counter-mask simple adaptive otsu --baselines classical --thresholds --dataset bbbc005 \
    --data ../shared/data/bbbc005 --out $OUT/dcc_counter/eval > $OUT/dcc_counter.eval.log 2>&1
}

run() {
  case $1 in
    unet) variant unet unet 16 --no-contact-gaps ;;
    small_unet) variant small_unet small_unet 8 --no-contact-gaps ;;
    resunet) variant resunet resunet 16 --no-contact-gaps ;;
    c_resunet) variant c_resunet c_resunet 4 --no-contact-gaps ;;
    c_resunet_no_weight_maps) variant c_resunet_no_weight_maps c_resunet 4 --no-contact-gaps --w0 0 ;;
    c_resunet_contact_gaps) variant c_resunet_contact_gaps c_resunet 4 ;;
    dcc_counter) dcc_counter ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- unet small_unet resunet c_resunet c_resunet_no_weight_maps c_resunet_contact_gaps dcc_counter
fi
for name in "$@"; do run "$name"; done
