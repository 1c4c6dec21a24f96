#!/bin/bash
# Every GPU benchmark and CUDA test in one device command of at most 8 minutes, the results packed under $OUT
# (at most 8 files). On a lent GPU machine, from the repository root:
#     bash benchmarks/gpu_check.sh
# Rehearse it on a CPU first (1000 x 1000 images, CUDA hidden, one repeat; a few minutes on 2 busy cores):
#     DEVICE=cpu OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
# The device's python3 has torch, numpy, scikit-image, OpenCV, safetensors and CuPy, perhaps not pytest, tqdm or
# tifffile, and nothing can be installed there: `bash benchmarks/gpu_check.sh --pack-deps` (here) copies those
# pure-Python packages from the project's .venv into benchmarks/.gpu-deps/ (8 MB, ignored by git); carry it with
# the command (carry=["benchmarks/.gpu-deps"]).
# Each step has its own time limit and is skipped when the 8-minute budget is spent; the log says which, and holds
# every row a benchmark printed before a limit cut it short (its JSON is written only at its end). The CPU
# rehearsals of 2026-12-01 03:25 and 03:43 UTC (load 8-9 on 2 cores) ran every step in 203 s; network_speed hit its
# limit, the tests took 85 s here. Again at 13d6810 (07:15 UTC, load about 2, CPU bf16 networks): every step in
# 73 s, 78 tests passed (4 skipped: CUDA), network_speed 49 s of its 50.
# Steps, most wanted first: the CUDA tests; the synthetic image; device_tiles (predict_probability at 10000 x 10000
# with the image kept on the GPU against the host path, MP/s and peak GPU memory per tile x batch, then
# `cellcount count --device GPU` end to end in a fresh process); post-processing (blocks on the host against
# `device_objects` on the GPU, same map); network_speed; tile_defaults; postprocess_speed.
# Results: env.txt (GPU, versions), tests.txt + tests.xml (tests/test_gpu.py, test_device_tiles.py,
# test_device_objects.py and the inference tests), results.tar.gz (the benchmarks' JSON results:
# device_tiles_speed_gpu, network_speed, tile_defaults_cuda,
# large_image_memory, postprocess_speed; the repository's benchmarks/results is left alone), log.txt (every step's
# output and time).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--pack-deps" ]; then
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf benchmarks/.gpu-deps && mkdir -p benchmarks/.gpu-deps
  for package in pytest _pytest pluggy iniconfig packaging tqdm tifffile py.py; do
    cp -r "$site/$package" benchmarks/.gpu-deps/ 2>/dev/null || echo "not in .venv: $package"
  done
  du -sh benchmarks/.gpu-deps
  exit 0
fi
PYTHON=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for the results}
BUDGET=${BUDGET:-470}  # seconds for all steps; the device allows 8 minutes a command
START=$SECONDS
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d benchmarks/.gpu-deps ] && export PYTHONPATH="$PYTHONPATH:$PWD/benchmarks/.gpu-deps"
export CELLCOUNT_BENCH_CACHE=${CELLCOUNT_BENCH_CACHE:-/tmp/cellcount-bench}
if [ "${DEVICE:-cuda}" = "cpu" ]; then  # the rehearsal: CUDA hidden, small images
  export CUDA_VISIBLE_DEVICES=""
  SIDE=1000; GPU_SIDE=1024; TORCH_DEVICE=CPU; POST_DEVICE=cpu; TILINGS="2048x1"; REPEATS=1
else
  SIDE=10000; GPU_SIDE=4096; TORCH_DEVICE=GPU; POST_DEVICE=cuda; TILINGS="1024x16 1024x4 2048x4 512x64"; REPEATS=2
fi
export CELLCOUNT_BENCH_RESULTS="$OUT/results"
mkdir -p "$CELLCOUNT_BENCH_RESULTS"
LOG="$OUT/log.txt"

step() {  # step NAME LIMIT_SECONDS COMMAND...: run within its limit and the budget left
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - (SECONDS - START) ))
  if (( left < 20 )); then echo "== $name: skipped (${left} s of the budget left)" >> "$LOG"; return; fi
  (( limit > left )) && limit=$left
  echo "== $name (limit ${limit} s): $*" >> "$LOG"
  local began=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >> "$LOG" 2>&1
  echo "== $name: exit $? after $(( SECONDS - began )) s" >> "$LOG"
}

{ date -u; nvidia-smi 2>&1 | head -15; nproc; free -g | head -2
  "$PYTHON" -c 'import torch, numpy, cv2, skimage, scipy; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported());
print("numpy", numpy.__version__, "opencv", cv2.__version__, "skimage", skimage.__version__, "scipy", scipy.__version__)'
  "$PYTHON" -c 'import cupy; print("cupy", cupy.__version__)' 2>&1 | tail -1; } > "$OUT/env.txt" 2>&1

step tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device_tiles.py \
  tests/test_device_objects.py tests/test_inference.py -m "not cellprofiler and not data" --junitxml="$OUT/tests.xml"
grep -E "passed|failed|error" "$LOG" | tail -1 > "$OUT/tests.txt"
step synthetic_image 100 "$PYTHON" -c "from benchmarks.common import synthetic; synthetic($SIDE)"
# shellcheck disable=SC2086  # TILINGS is a list of words
step device_tiles 150 "$PYTHON" -m benchmarks.device_tiles_speed --side "$SIDE" --device "$TORCH_DEVICE" \
  --tilings $TILINGS --repeats "$REPEATS"
step post_processing 90 "$PYTHON" -m benchmarks.large_image_memory --sides "$SIDE" --whole-up-to 0 --paths post \
  --post-device "$POST_DEVICE"
step network_speed 50 "$PYTHON" -m benchmarks.network_speed --repeats 1 --gpu-image "$GPU_SIDE"
step tile_defaults 40 "$PYTHON" -m benchmarks.tile_defaults --device "$TORCH_DEVICE" --side "$GPU_SIDE" \
  --tiles 512 1024 2048 --batches 4 16 64 --repeats 2
step postprocess_speed 60 "$PYTHON" -m benchmarks.postprocess_speed --side "$SIDE" --repeats 1

tar -czf "$OUT/results.tar.gz" -C "$OUT" results && rm -r "$CELLCOUNT_BENCH_RESULTS"
echo "total $(( SECONDS - START )) s" >> "$LOG"
ls -la "$OUT" >> "$LOG"
