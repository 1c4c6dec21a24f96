"""DeepSegment's network pass with the image kept on the device against the host path, and `cellcount count`
end to end.

    python -m benchmarks.device_tiles_speed [--side 10000] [--device GPU] [--tilings 1024x16 2048x4] [--repeats 2]

1. In this process, on a side x side 16-bit synthetic image (`benchmarks.common.synthetic`): `predict_probability`
   through `running/device_tiles` (the image uploaded once; percentiles, tiles, network and stitching on the
   device) and through the host path (numpy tiles, ``device_tiles.DEVICE_TYPES`` emptied), interleaved, for each
   tile size x batch: seconds, MP/s, peak GPU memory, and how far the two maps differ. On a CPU the device path is
   forced (``DEVICE_TYPES`` widened), which is how it was chosen not to be the CPU's default.
2. In a child process: ``cellcount count IMAGE --device DEVICE`` as a user runs it (cell size automatic, both
   networks, post-processing): the process's wall time, the command's own time, MP/s, the count against the
   truth, peak RSS and peak GPU memory.

Results: ``results/device_tiles_speed_<device>.json`` and a Markdown table.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

from benchmarks.common import finish, machine, report, run_child, synthetic

ME = "benchmarks.device_tiles_speed"


def gpu_peak_gb():
    """Peak GPU memory allocated by torch in this process (GB), or None without CUDA."""
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _timed_map(image, device, tile_size, batch_size, on_device):
    """(seconds, map, peak GPU GB) of one `predict_probability`, through the device path or the host path."""
    import torch

    from cellcount_core.running import device_tiles
    from cellcount_core.running.inference import predict_probability

    kind = torch.device("cuda" if device == "GPU" else "cpu").type
    device_tiles.DEVICE_TYPES = (kind,) if on_device else ()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    probability = predict_probability(image, device=device, tile_size=tile_size, batch_size=batch_size)
    return time.perf_counter() - start, probability, gpu_peak_gb()


def compare_paths(image, device, tilings, repeats):
    """Rows of interleaved device-path and host-path runs for each (tile size, batch); a tiling that fails (out
    of memory, an operation the device lacks) gets a row with the error, and the others still run."""
    from cellcount_core.running.inference import clear_model_cache

    _timed_map(image[:512, :512], device, 512, 1, True)  # loads the model (and CUDA's kernels) once
    rows = []
    for tile_size, batch_size in tilings:
        try:
            rows += _tiling_rows(image, device, tile_size, batch_size, repeats)
        except Exception as error:  # noqa: BLE001 - recorded in the results, the next tiling runs
            traceback.print_exc()
            rows.append({"measure": "predict_probability", "tile x batch": f"{tile_size} x {batch_size}",
                         "detail": f"failed: {type(error).__name__}: {error}"})
            clear_model_cache()
    return rows


def _tiling_rows(image, device, tile_size, batch_size, repeats):
    """The device-path and host-path rows of one tiling, timed in turns."""
    megapixels = image.shape[0] * image.shape[1] / 1e6
    times = {True: [], False: []}
    peaks, maps = {}, {}
    for _ in range(repeats):
        for on_device in (True, False):
            seconds, maps[on_device], peaks[on_device] = _timed_map(image, device, tile_size, batch_size, on_device)
            times[on_device].append(seconds)
    difference = float(np.abs(maps[True] - maps[False]).max())
    flipped = float(np.mean((maps[True] > 0.5) != (maps[False] > 0.5)))
    rows = []
    for on_device in (True, False):
        best = min(times[on_device])
        rows.append({
            "measure": "predict_probability", "path": "device" if on_device else "host",
            "tile x batch": f"{tile_size} x {batch_size}", "seconds (best)": round(best, 3),
            "MP/s": round(megapixels / best, 1), "runs s": " ".join(f"{t:.2f}" for t in times[on_device]),
            "GPU peak GB": peaks[on_device] if peaks[on_device] is not None else "n/a (no GPU)",
            "detail": (f"device/host speed {min(times[False]) / best:.2f}; max |map difference| "
                       f"{difference:.2e}; pixels on the other side of 0.5: {flipped:.2e}") if on_device else "",
        })
        print(rows[-1], flush=True)
    return rows


def child_count(image_path, device):
    """Run ``cellcount count IMAGE --device DEVICE`` in this process and report its time, count and memory."""
    from cellcount_cellprofiler.cli import main

    with tempfile.TemporaryDirectory() as folder:
        table = os.path.join(folder, "counts.csv")
        start = time.perf_counter()
        status = main(["count", image_path, "--device", device, "--csv", table])
        seconds = time.perf_counter() - start
        with open(table, newline="") as handle:
            [row] = list(csv.DictReader(handle))
    report(seconds=seconds, status=status, count=row["count"], regression_count=row["regression_count"],
           error=row["error"], gpu_peak_gb=gpu_peak_gb())


def count_end_to_end(paths, side, device, truth):
    """A row for ``cellcount count`` run in a fresh process on the image."""
    start = time.perf_counter()
    try:
        result = run_child(ME, "count", paths["image"], device)
    except subprocess.CalledProcessError as error:
        print(error.stderr, flush=True)
        return {"measure": f"cellcount count --device {device}", "detail": f"failed: {error.stderr[-300:]}"}
    wall = time.perf_counter() - start
    megapixels = side * side / 1e6
    return {
        "measure": f"cellcount count --device {device}", "path": "end to end (fresh process)",
        "tile x batch": "defaults", "seconds (best)": round(wall, 1), "MP/s": round(megapixels / wall, 2),
        "runs s": f"{wall:.1f} process, {result['seconds']:.1f} in the command",
        "GPU peak GB": result["gpu_peak_gb"] if result["gpu_peak_gb"] is not None else "n/a (no GPU)",
        "detail": (f"count {result['count']} of {truth} cells, regression {result['regression_count']}, exit "
                   f"{result['status']}{', error ' + result['error'] if result['error'] else ''}; "
                   f"peak RSS {result['peak_rss_mb'] / 1024:.2f} GB; "
                   f"{megapixels / result['seconds']:.2f} MP/s in the command"),
    }


def parse_tiling(text):
    """'1024x16' -> (1024, 16)."""
    try:
        tile, batch = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"tiling {text!r} is not TILExBATCH, e.g. 1024x16") from None
    return tile, batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10000)
    parser.add_argument("--device", choices=("GPU", "CPU"), default="GPU")
    parser.add_argument("--tilings", type=parse_tiling, nargs="+", default=[(1024, 16), (2048, 4), (512, 64)],
                        help="tile size x tiles per batch, e.g. 1024x16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-count", action="store_true", help="leave out `cellcount count`")
    args = parser.parse_args(argv)
    from cellcount_core.images.image_io import read_image

    info = machine()
    paths = synthetic(args.side)
    truth = json.loads(paths["truth"].read_text())["count"]
    rows = compare_paths(read_image(paths["image"]), args.device, args.tilings, args.repeats)
    if not args.skip_count:
        rows.append(count_end_to_end(paths, args.side, args.device, truth))
        print(rows[-1], flush=True)
    finish(f"device_tiles_speed_{args.device.lower()}", info, rows,
           image=f"{args.side} x {args.side} uint16 synthetic, {truth} cells")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "count":
        child_count(sys.argv[2], sys.argv[3])
    else:
        main()
