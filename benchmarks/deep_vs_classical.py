"""DeepSegment + DeepThreshold against IdentifyPrimaryObjects: seconds per image in one run, as a ratio.

    python -m benchmarks.deep_vs_classical [--sizes 1024 2048] [--seeds 2] [--repeats 2]

The modules run through CellProfiler's own Workspace (as in tests/test_plugins.py) on the same synthetic 16-bit
images, interleaved image by image so that both see the same machine load; each time is the median of the
repeats. IdentifyPrimaryObjects has CellProfiler's default settings (border objects kept). DeepSegment runs the
bundled segmenter when it is installed, else c_resunet with random weights (its speed does not depend on the
weights); in that case DeepThreshold is given the ideal probability map of the true cells instead of the
network's meaningless output, so that its post-processing sees real cells.
"""

import argparse
import json
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


def deep(image, model_path, ideal, tile_size):
    """(DeepSegment seconds, DeepThreshold seconds, count) with the given model file and tile size.

    With `ideal` (the path of a .npy map), DeepThreshold gets that probability map instead of DeepSegment's,
    copied into DeepSegment's output. Only the Workspace keeps the image: pass it as a temporary to measure
    memory as CellProfiler uses it.
    """
    from cellcount_cellprofiler.pipeline_builder import new_module

    segment = new_module("DeepSegment", x_name="DNA", y_name="DeepProbability", tile_size=tile_size)
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--seeds", type=int, default=2, help="images per size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args(argv)
    import tifffile

    from cellcount_cellprofiler.pipeline_builder import start_cellprofiler

    start_cellprofiler()
    info = machine()
    label, model_path = bundled_or("segmenter", "c_resunet")
    rows = []
    for size in args.sizes:
        for seed in range(args.seeds):
            paths = synthetic(size, seed)
            image = tifffile.imread(paths["image"])
            truth = json.loads(paths["truth"].read_text())["count"]
            ideal = None if label.startswith("bundled") else paths["ideal"]
            times = {"classical": []}
            counts = {}
            for _ in range(args.repeats):
                seconds, counts["classical"] = classical(image)
                times["classical"].append(seconds)
                for tile in args.tile_sizes:
                    segment_s, threshold_s, counts[tile] = deep(image, model_path, ideal, tile)
                    times.setdefault(f"segment {tile}", []).append(segment_s)
                    times.setdefault(f"threshold {tile}", []).append(threshold_s)
            median = {k: statistics.median(v) for k, v in times.items()}
            row = {"image": f"{size}x{size} seed {seed}", "cells": truth, "classical s": round(median["classical"], 2),
                   "classical count": counts["classical"]}
            for tile in args.tile_sizes:
                total = median[f"segment {tile}"] + median[f"threshold {tile}"]
                row[f"DeepSegment s (tile {tile})"] = round(median[f"segment {tile}"], 2)
                row[f"DeepThreshold s (tile {tile})"] = round(median[f"threshold {tile}"], 2)
                row[f"deep / classical (tile {tile})"] = round(total / median["classical"], 2)
                row[f"deep count (tile {tile})"] = counts[tile]
            rows.append(row)
            print(row, flush=True)
    finish("deep_vs_classical", info, rows, segmenter=label)


if __name__ == "__main__":
    main()
