"""Post-processing speed on the ideal probability map of a large synthetic image: this checkout against an
earlier revision, interleaved in one run.

    python -m benchmarks.postprocess_speed [--side 10000] [--baseline 1f5a5c8] [--repeats 2] [--profile]

Each measurement is a fresh process running DeepThreshold's core (`labels_from_probability`, Model default
threshold 0.5, diameter estimated) on the cached ideal map (`synthetic.ideal_probability` of the true cells), so
both versions see the same input and, run in turns, the same machine load. Reported: seconds, count and peak
resident memory per run, and the ratio of the medians. ``--profile`` also writes the 30 costliest functions of
one more run of each version (cProfile, by own time) to ``results/postprocess_profile_<version>.txt``.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time

import numpy as np

from benchmarks.common import RESULTS, code_at, finish, machine, report, run_child, synthetic

ME = "benchmarks.postprocess_speed"
#: The commit before post-processing was summed over component pixels (issue 12 part 1); df58f1a is the one
#: before the OpenCV post-processing (skimage/scipy, one block at a time).
BASELINE = "1f5a5c8"


def child(side, profile_to=""):
    import cellcount_core
    from cellcount_core.objects.segmentation import labels_from_probability

    probability = np.load(synthetic(int(side))["ideal"])
    profiler = cProfile.Profile() if profile_to else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    count = labels_from_probability(probability, threshold_value=0.5).count
    seconds = time.perf_counter() - start
    if profiler:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / profile_to).write_text(f"{seconds:.1f} s, count {count}\n{text.getvalue()}")
    report(seconds=seconds, count=int(count), code=os.path.dirname(cellcount_core.__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10000)
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    info = machine()
    paths = synthetic(args.side)
    truth = json.loads(paths["truth"].read_text())["count"]
    versions = {f"baseline {args.baseline}": code_at(args.baseline), "this checkout": None}
    times = {name: [] for name in versions}
    rows = []
    for repeat in range(args.repeats):
        for name, code in versions.items():
            load = os.getloadavg()[0]
            result = run_child(ME, "child", args.side, code=code)
            times[name].append(result["seconds"])
            rows.append({"version": name, "repeat": repeat + 1, "seconds": round(result["seconds"], 1),
                         "s/MP": round(result["seconds"] / (args.side**2 / 1e6), 3),
                         "peak RSS GB": round(result["peak_rss_mb"] / 1024, 2), "cells": truth,
                         "count": result["count"], "load (1 min) before": round(load, 2)})
            print(rows[-1], flush=True)
    if args.profile:
        for name, code in versions.items():
            run_child(ME, "child", args.side, f"postprocess_profile_{name.split()[0]}.txt", code=code)
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline, current = medians.values()
    finish("postprocess_speed", info, rows, image=f"{args.side} x {args.side} ideal map",
           speed_up=f"{baseline / current:.2f} x (median {baseline:.1f} s -> {current:.1f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(*sys.argv[2:])
    else:
        main()
