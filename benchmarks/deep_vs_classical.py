"""DeepSegment + DeepThreshold against IdentifyPrimaryObjects: seconds per image in one run, as a ratio.

    python -m benchmarks.deep_vs_classical [--sizes 696x520 1024 2048] [--seeds 2] [--repeats 2] [--tilings auto 512]

The modules run through CellProfiler's own Workspace (as in tests/test_plugins.py) on the same synthetic 16-bit
images (sizes as WIDTHxHEIGHT or one side), interleaved image by image so that both see the same machine load;
each time is the median of the repeats. IdentifyPrimaryObjects has CellProfiler's default settings (border
objects kept); DeepSegment and DeepThreshold theirs, except the tiling: "auto" is the default (Automatic), a
number is a Manual tile size with the default 4 tiles per batch. DeepSegment runs the
bundled segmenter when it is installed, else c_resunet with random weights (its speed does not depend on the
weights); in that case DeepThreshold is given the ideal probability map of the true cells instead of the
network's meaningless output, so that its post-processing sees real cells.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np

from cellcount_cellprofiler.workspace import single_image_workspace
from benchmarks.common import bundled_or, finish, machine, synthetic


def timed(module, space):
    start = time.perf_counter()
    module.run(space)
    return time.perf_counter() - start


def classical(image):
    """(seconds, count) of IdentifyPrimaryObjects."""
    from cellcount_cellprofiler.pipeline_builder import classical_module

    module = classical_module()
    module.set_module_num(1)
    space = single_image_workspace(module, {"DNA": image})
    seconds = timed(module, space)
    return seconds, int(space.measurements.get_current_image_measurement("Count_Nuclei"))


def deep(image, model_path, ideal, tiling):
    """(DeepSegment seconds, DeepThreshold seconds, count) with the given model file and tiling ("auto" or a tile
    size).

    With `ideal` (the path of a .npy map), DeepThreshold gets that probability map instead of DeepSegment's,
    copied into DeepSegment's output. Only the Workspace keeps the image: pass it as a temporary to measure
    memory as CellProfiler uses it.
    """
    from cellcount_cellprofiler.pipeline_builder import new_module

    segment = new_module("DeepSegment", x_name="DNA", y_name="DeepProbability")
    if tiling != "auto":
        segment.tiling_mode.value = "Manual"
        segment.tile_size.value = int(tiling)
    segment.model_source.value = "Custom model file"
    segment.model_directory.value = f"Elsewhere...|{model_path.parent}"
    segment.model_file.value = model_path.name
    threshold = new_module("DeepThreshold", x_name="DeepProbability", y_name="DeepNuclei")
    for number, module in enumerate((segment, threshold), start=1):
        module.set_module_num(number)
    space = single_image_workspace(segment, {"DNA": image})
    del image
    segment_seconds = timed(segment, space)
    if ideal is not None:
        mapped = np.load(ideal, mmap_mode="r")
        space.image_set.get_image("DeepProbability").pixel_data[...] = mapped
        del mapped  # unmapped: its pages leave this process's resident memory
    threshold_seconds = timed(threshold, space)
    count = int(space.measurements.get_current_image_measurement("Count_DeepNuclei"))
    return segment_seconds, threshold_seconds, count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["696x520", "1024", "2048"], help="WIDTHxHEIGHT or SIDE")
    parser.add_argument("--seeds", type=int, default=2, help="images per size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tilings", nargs="+", default=["auto", "512"],
                        help="auto (DeepSegment's default) or a manual tile size in pixels")
    parser.add_argument("--spinning-threads", action="store_true",
                        help="load torch before cellcount_core.running asks OpenMP threads to wait passively, so "
                             "that they spin as libgomp does by default (the deep path before 2026-12-01)")
    parser.add_argument("--torch-threads", type=int,
                        help="torch CPU threads (default: torch's, one per core); 1 is what each of CellProfiler's "
                             "one-worker-per-core processes should use")
    args = parser.parse_args(argv)
    if not args.spinning_threads:
        import cellcount_core.running  # noqa: F401  (asks OpenMP threads to wait passively before torch loads)
    import torch  # libgomp reads OMP_WAIT_POLICY now: with --spinning-threads it is not set yet

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    import tifffile

    from cellcount_cellprofiler.pipeline_builder import start_cellprofiler

    start_cellprofiler()
    info = machine()  # records torch's thread count
    label, model_path = bundled_or("segmenter", "c_resunet")
    deep(tifffile.imread(synthetic(256)["image"]), model_path, None, "auto")  # loads the model: not timed
    rows = []
    for size in args.sizes:
        width, height = (int(n) for n in size.split("x")) if "x" in size else (int(size), int(size))
        for seed in range(args.seeds):
            paths = synthetic(height, seed, width=width)
            image = tifffile.imread(paths["image"])
            truth = json.loads(paths["truth"].read_text())["count"]
            ideal = None if label.startswith("bundled") else paths["ideal"]
            times = {"classical": []}
            counts = {}
            for _ in range(args.repeats):
                seconds, counts["classical"] = classical(image)
                times["classical"].append(seconds)
                for tile in args.tilings:
                    segment_s, threshold_s, counts[tile] = deep(image, model_path, ideal, tile)
                    times.setdefault(f"segment {tile}", []).append(segment_s)
                    times.setdefault(f"threshold {tile}", []).append(threshold_s)
            median = {k: statistics.median(v) for k, v in times.items()}
            row = {"image": f"{width}x{height} seed {seed}", "cells": truth,
                   "classical s": round(median["classical"], 2), "classical count": counts["classical"]}
            for tile in args.tilings:
                total = median[f"segment {tile}"] + median[f"threshold {tile}"]
                row[f"DeepSegment s (tile {tile})"] = round(median[f"segment {tile}"], 2)
                row[f"DeepThreshold s (tile {tile})"] = round(median[f"threshold {tile}"], 2)
                row[f"deep / classical (tile {tile})"] = round(total / median["classical"], 2)
                row[f"deep count (tile {tile})"] = counts[tile]
            rows.append(row)
            print(row, flush=True)
    name = "deep_vs_classical" + ("_spinning" if args.spinning_threads else "") + (
        f"_{args.torch_threads}_threads" if args.torch_threads else "")
    finish(name, info, rows, segmenter=label,
           omp_wait_policy="libgomp default (spinning)" if args.spinning_threads else os.environ["OMP_WAIT_POLICY"])


if __name__ == "__main__":
    main()
