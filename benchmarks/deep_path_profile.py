"""Where DeepSegment + DeepThreshold spend their time inside CellProfiler, step by step (cProfile).

    python -m benchmarks.deep_path_profile [--sizes 696x520 1024 2048] [--tilings auto 512]

Each image runs once untimed (model loading), then once under cProfile through CellProfiler's Workspace with the
modules' defaults (the tiling as given). The steps are cumulative times of the functions that do them; the
network and normalization rows include the coarse probes' share, which is also given on its own. cProfile adds
little here: the time is in a few hundred calls into torch, numpy and OpenCV.
"""

import argparse
import cProfile
import pstats

from benchmarks.common import bundled_or, finish, machine, synthetic

#: (step, module file, function) whose cumulative time is that step's.
STEPS = (
    ("network forward", "running/inference.py", "_forward"),
    ("normalization (percentiles, noise, scaling)", "running/inference.py", "_image_input"),
    ("normalization (percentiles, noise, scaling)", "images/normalization.py", "scale_to_range"),
    ("tiles cut", "running/tiling.py", "extract_tile"),
    ("tiles stitched", "running/tiling.py", "_kept_outputs"),
    ("cell-scale probes (all their steps)", "running/cell_scale.py", "probe_diameter"),
    ("cell diameter of the full-size pass", "running/cell_scale.py", "diameter_in_probability"),
    ("DeepSegment.run", "plugins/deepsegment.py", "run"),
    ("DeepThreshold.run (post-processing, measurements)", "plugins/deepthreshold.py", "run"),
)


def cumulative_seconds(stats, file_suffix, function):
    """The cumulative time of every profiled function of that name whose file ends with `file_suffix`."""
    return sum(row[3] for (path, _, name), row in stats.stats.items()
               if name == function and path.endswith(file_suffix))


def profile(image, model_path, tiling):
    """{step: seconds} of one DeepSegment + DeepThreshold run."""
    from benchmarks.deep_vs_classical import deep

    profiler = cProfile.Profile()
    profiler.enable()
    deep(image, model_path, None, tiling)
    profiler.disable()
    stats = pstats.Stats(profiler)
    seconds = {}
    for step, path, function in STEPS:
        seconds[step] = seconds.get(step, 0.0) + cumulative_seconds(stats, path, function)
    seconds["DeepSegment around the network (CellProfiler, image checks)"] = seconds["DeepSegment.run"] - (
        cumulative_seconds(stats, "running/inference.py", "predict_probability_at_cell_scale"))
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["696x520", "1024", "2048"], help="WIDTHxHEIGHT or SIDE")
    parser.add_argument("--tilings", nargs="+", default=["auto", "512"])
    args = parser.parse_args(argv)
    import tifffile

    from benchmarks.deep_vs_classical import deep
    from cellcount_cellprofiler.pipeline_builder import start_cellprofiler

    start_cellprofiler()
    info = machine()
    label, model_path = bundled_or("segmenter", "c_resunet")
    rows = []
    for size in args.sizes:
        width, height = (int(n) for n in size.split("x")) if "x" in size else (int(size), int(size))
        image = tifffile.imread(synthetic(height, width=width)["image"])
        for tiling in args.tilings:
            deep(image, model_path, None, tiling)
            seconds = profile(image, model_path, tiling)
            rows.append({"image": f"{width}x{height}", "tiling": tiling,
                         **{step: round(value, 2) for step, value in seconds.items()}})
            print(rows[-1], flush=True)
    finish("deep_path_profile", info, rows, segmenter=label)


if __name__ == "__main__":
    main()
