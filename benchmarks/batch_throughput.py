"""`cellcount batch` throughput: image sets per second with 1 and 2 local workers, and CellProfiler's fixed cost
per chunk (start-up, plugin and model loading), from which the default chunk size is chosen.

    python -m benchmarks.batch_throughput [--images 16] [--chunk-size 8] [--pipelines classical deep]

Images: the first 256 x 256 DSB2018 images of ../shared/data (PNG). Pipelines: `classical` (IdentifyPrimaryObjects
only) and `deep` (pipelines/compare_counts.cppipe: IdentifyPrimaryObjects, DeepSegment, DeepThreshold, DeepCount).
Fixed cost: plain headless runs of 1 and of N image sets, t(n) = fixed + n * per_image. Throughput: `run_batch`
on a LocalCluster, timed without its pre-flight (measured on its own: it runs once per batch).
"""

import argparse
import csv
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import CACHE, finish, machine
from cellcount_cellprofiler.plugin_folder import plugins_dir

REPO = Path(__file__).resolve().parents[1]
DSB2018 = REPO.parent / "shared" / "data" / "dsb2018_fluo"
#: The chunk size keeps CellProfiler's fixed cost under this share of a chunk's time.
FIXED_SHARE = 0.1


def image_folder(count):
    """A cached folder of the first ``count`` 256 x 256 DSB2018 images."""
    if not DSB2018.is_dir():
        sys.exit(f"{DSB2018} is absent: this benchmark runs on real DSB2018 images.")
    folder = CACHE / f"batch_dsb2018_{count}"
    if not folder.is_dir():
        with open(DSB2018 / "counts.csv", newline="") as handle:
            small = sorted(row["id"] for row in csv.DictReader(handle) if row["height"] == row["width"] == "256")
        folder.mkdir(parents=True)
        for name in small[:count]:
            shutil.copy(DSB2018 / "images" / f"{name}.png", folder)
    return folder


def pipeline_file(name):
    if name == "deep":
        return REPO / "pipelines" / "compare_counts.cppipe"
    path = CACHE / "batch_classical.cppipe"
    subprocess.run([sys.executable, "-c", "from cellcount_cellprofiler.pipeline_builder import *; start_cellprofiler();"
                    f"open({str(path)!r}, 'w').write(pipeline_text(input_modules() + [classical_module(), "
                    "export_module()]))"], check=True, capture_output=True)
    return path


def plain_seconds(pipeline, images, last):
    """Wall seconds of one headless CellProfiler run of image sets 1..last."""
    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(pipeline), "-i", str(images),
                        "-o", output, "-f", "1", "-l", str(last), "--plugins-directory", str(plugins_dir())],
                       check=True, capture_output=True)
        return time.perf_counter() - start


def batch_seconds(pipeline, images, workers, chunk_size):
    """Wall seconds of `run_batch` (pre-flight included) on a fresh output folder."""
    from cellcount_cellprofiler.batch.runner import run_batch

    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        outcome = run_batch(pipeline, images, output, chunk_size=chunk_size, workers=workers, progress=False,
                            announce=lambda line: None)
        assert outcome.ok, outcome.failed
        return time.perf_counter() - start


def preflight_seconds(pipeline, images):
    from cellcount_cellprofiler.batch.preflight import run_preflight

    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        run_preflight(pipeline, images, plugins_dir(), Path(output) / "image_sets.json")
        return time.perf_counter() - start


def measure(name, images, count, chunk_size):
    pipeline = pipeline_file(name)
    one, many = plain_seconds(pipeline, images, 1), plain_seconds(pipeline, images, chunk_size)
    per_image = (many - one) / (chunk_size - 1)
    fixed = one - per_image
    preflight = preflight_seconds(pipeline, images)
    row = {"pipeline": name, "fixed s per chunk": round(fixed, 1), "s per image set": round(per_image, 2),
           "pre-flight s": round(preflight, 1)}
    for workers in (1, 2):
        seconds = batch_seconds(pipeline, images, workers, chunk_size) - preflight
        row[f"image sets/s, {workers} worker(s)"] = round(count / seconds, 3)
    row[f"chunk size for fixed cost <= {FIXED_SHARE:.0%}"] = math.ceil((1 - FIXED_SHARE) / FIXED_SHARE * fixed
                                                                       / per_image)
    print(row, flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--pipelines", nargs="+", default=["classical", "deep"], choices=("classical", "deep"))
    args = parser.parse_args(argv)
    info = machine()
    images = image_folder(args.images)
    rows = [measure(name, images, args.images, args.chunk_size) for name in args.pipelines]
    finish("batch_throughput", info, rows,
           setup=f"{args.images} DSB2018 images of 256 x 256, chunks of {args.chunk_size}, LocalCluster")


if __name__ == "__main__":
    main()
