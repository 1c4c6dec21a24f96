"""Peak memory, time and count error for square 16-bit images of 2k, 5k and 10k pixels a side.

    python -m benchmarks.large_image_memory [--sides 2000 5000 10000] [--whole-up-to 5000] [--post-device cuda]

Each measurement runs in a fresh process, which reports its peak resident memory (``ru_maxrss``: Python,
torch and CellProfiler included) and, on a GPU, its peak GPU memory:

- ``cellprofiler``: DeepSegment + DeepThreshold (defaults, Model default threshold) through CellProfiler's
  Workspace on the image as CellProfiler holds it (float32).
- ``cellcount count``: what ``cellcount count IMAGE`` runs (segmenter, post-processing, counting network).
- ``post-processing``: DeepThreshold's core alone (``labels_from_probability``) on the ideal probability map,
  in blocks (the default above 2048 x 2048) and, up to ``--whole-up-to``, on the whole image for comparison;
  with ``--post-device``, also on that torch device as one block (``device_objects``).

Without installed bundled models the networks are c_resunet and density_counter with random weights (their
time and memory do not depend on the weights), and the post-processing is given the ideal probability map of
the true cells, so counts measure the post-processing with a perfect network.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks.common import bundled_or, finish, machine, report, run_child, synthetic

ME = "benchmarks.large_image_memory"


def gpu_peak_gb():
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def child_cellprofiler(side):
    import tifffile

    from benchmarks.deep_vs_classical import deep
    from cellcount_cellprofiler.pipeline_builder import start_cellprofiler

    start_cellprofiler()
    paths = synthetic(side)
    label, model = bundled_or("segmenter", "c_resunet")
    ideal = None if label.startswith("bundled") else paths["ideal"]
    segment_s, threshold_s, count = deep(tifffile.imread(paths["image"]), model, ideal, 512)
    report(seconds=segment_s + threshold_s, detail=f"DeepSegment {segment_s:.0f} s, DeepThreshold {threshold_s:.0f} s",
           count=int(count), model=label, gpu_peak_gb=gpu_peak_gb())


def child_count(side):
    from cellcount_core.counts.batch_count import count_files
    from cellcount_core.images.image_io import read_image
    from cellcount_core.running.inference import predict_count, predict_probability
    from cellcount_core.objects.segmentation import labels_from_probability

    paths = synthetic(side)
    segmenter, segmenter_path = bundled_or("segmenter", "c_resunet")
    counter, counter_path = bundled_or("counter", "density_counter")
    start = time.perf_counter()
    if segmenter.startswith("bundled"):
        [row] = count_files([paths["image"]], segmenter=segmenter_path, counter=counter_path, progress=False)
        count, detail = row["count"], f"regression count {row['regression_count']}"
    else:  # count_files' three steps, the post-processing on the ideal map
        image = read_image(paths["image"])
        network = predict_probability(image, segmenter_path)
        network[...] = np.load(paths["ideal"], mmap_mode="r")
        count = labels_from_probability(network, threshold_value=0.5).count
        predict_count(image, counter_path)
        detail = f"counter {counter}"
    report(seconds=time.perf_counter() - start, count=int(count), model=segmenter, detail=detail,
           gpu_peak_gb=gpu_peak_gb())


def child_post(side, mode):
    """Post-process the ideal map in `mode`: "blocks", "whole" or "device:<torch device>" (`device_objects`; a
    CPU device is let in for rehearsals), timed from the map in host memory to the labels there."""
    from cellcount_core.objects import large_images
    from cellcount_core.objects.segmentation import labels_from_probability

    probability = np.load(synthetic(side)["ideal"])
    device, gpu_peak = None, "n/a (CPU only)"
    if mode == "whole":
        large_images.LARGE_IMAGE_PIXELS = probability.size
    if mode.startswith("device:"):
        import torch

        from cellcount_core.objects import device_objects

        device = torch.device(mode.split(":", 1)[1])
        if device.type == "cpu":
            device_objects.DEVICE_TYPES = ("cpu",)
        labels_from_probability(probability[:256, :256], threshold_value=0.5, device=device)  # warm-up
    start = time.perf_counter()
    count = labels_from_probability(probability, threshold_value=0.5, device=device).count
    seconds = time.perf_counter() - start
    if device is not None and device.type == "cuda":
        gpu_peak = gpu_peak_gb()
    report(seconds=seconds, count=int(count), model="ideal map", detail=mode, gpu_peak_gb=gpu_peak)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--whole-up-to", type=int, default=5000,
                        help="largest side also post-processed on the whole image (about 40 bytes per pixel)")
    parser.add_argument("--post-device", help="also post-process on this torch device (e.g. cuda; cpu rehearses)")
    parser.add_argument("--paths", nargs="+", choices=("post", "cellprofiler", "count"),
                        default=["post", "cellprofiler", "count"], help="what to measure (cellprofiler needs it)")
    args = parser.parse_args(argv)
    info = machine()
    rows = []
    for side in args.sides:
        truth = json.loads(synthetic(side)["truth"].read_text())["count"]
        runs = [("post-processing (blocks)", ("post", side, "blocks"))]
        if side <= args.whole_up_to:
            runs.append(("post-processing (whole image)", ("post", side, "whole")))
        if args.post_device:
            runs.append((f"post-processing ({args.post_device})", ("post", side, f"device:{args.post_device}")))
        runs += [("cellprofiler", ("cellprofiler", side)), ("cellcount count", ("count", side))]
        runs = [run for run in runs if run[1][0] in args.paths]
        for name, child_args in runs:
            load = os.getloadavg()[0]
            result = run_child(ME, *child_args)
            rows.append({
                "image": f"{side}x{side}", "path": name, "model": result["model"],
                "seconds": round(result["seconds"], 1),
                "s/MP": round(result["seconds"] / (side * side / 1e6), 2),
                "peak RSS GB": round(result["peak_rss_mb"] / 1024, 2),
                "GPU peak GB": result.get("gpu_peak_gb") or "not measured (no GPU)",
                "cells": truth, "count": result["count"],
                "error %": round(100 * (result["count"] - truth) / truth, 2),
                "detail": result["detail"], "load (1 min) before": round(load, 2),
            })
            print(rows[-1], flush=True)
    finish("large_image_memory", info, rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("cellprofiler", "count", "post"):
        {"cellprofiler": child_cellprofiler, "count": child_count, "post": child_post}[sys.argv[1]](
            int(sys.argv[2]), *sys.argv[3:])
    else:
        main()
