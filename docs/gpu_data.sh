#!/bin/bash
# Build ./shared/data, the part of ../shared/data that travels with the working tree to a lent GPU machine.
# The device tool carries at most 64 MiB (tree included) and never ../shared; BBBC005's 1152 zlib TIFFs are
# 98 MB (noise: LZMA saves 5 %), so only some sites go: s01 and s02 (training, 288 images) and s07 (validation,
# 144 images), all blur levels and stains, with every DSB2018 image. The split rules are unchanged (by site for
# BBBC005, by id hash for DSB2018), so training still never sees a validation image.
# Usage (repository root, here, not on the device): bash docs/gpu_data.sh   (then see docs/gpu_train.sh)
set -euo pipefail
SOURCE=${SOURCE:-../shared/data}
TARGET=shared/data
SITES=${SITES:-"s01 s02 s07"}
[ -d "$SOURCE/bbbc005/images" ] || { echo "No BBBC005 at $SOURCE/bbbc005; set SOURCE to the data folder." >&2; exit 2; }
rm -rf "$TARGET"
mkdir -p "$TARGET/bbbc005/images"
copy() { cp -l "$@" 2>/dev/null || cp "$@"; }  # hard links where the file system allows, else copies
for site in $SITES; do
  copy "$SOURCE"/bbbc005/images/*_${site}_* "$TARGET/bbbc005/images/"
done
copy -r "$SOURCE/bbbc005/masks" "$TARGET/bbbc005/"
copy "$SOURCE/bbbc005/labels.csv" "$TARGET/bbbc005/"
copy -r "$SOURCE/dsb2018_fluo" "$TARGET/"
tree_bytes=$(git ls-files -z | xargs -0 cat | wc -c)
data_bytes=$(du -sb shared | cut -f1)
echo "$TARGET: $(ls $TARGET/bbbc005/images | wc -l) BBBC005 and $(ls $TARGET/dsb2018_fluo/images | wc -l)" \
     "DSB2018 images; with the tracked tree $(( (tree_bytes + data_bytes) / 1048576 )) MiB of the 64 MiB a call carries"
