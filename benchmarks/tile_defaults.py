"""The fastest tile size and batch size for the bundled segmenter on this machine's device, interleaved.

    python -m benchmarks.tile_defaults [--side 2000] [--tiles 256 512 1024 2048] [--batches 1 4] [--repeats 2]

`predict_probability` (default overlap: the network's receptive field) on a cached side x side synthetic 16-bit
image, every (tile, batch) pair once per round, rounds repeated, so that all pairs see the same machine load;
each time is the median over the rounds. Batches above the number of tiles an image needs are skipped. The
result's fastest pair is what `tiling.automatic_tiling` should return for this device (BENCHMARKS.md).
"""

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import finish, machine, synthetic


def timed(image, device, tile, batch):
    from cellcount_core.running.inference import predict_probability

    start = time.perf_counter()
    predict_probability(image, device=device, tile_size=tile, batch_size=batch)
    return time.perf_counter() - start


def main(argv=None):
    import tifffile

    from cellcount_core.running.inference import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2000)
    parser.add_argument("--device", default="Auto")
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    info = machine()
    image = tifffile.imread(synthetic(args.side)["image"])
    device = str(resolve_device(args.device))
    pairs = [(tile, batch) for tile in args.tiles for batch in args.batches
             if batch == min(args.batches) or batch <= np.ceil(args.side / tile) ** 2]
    timed(image[:512, :512], args.device, 512, 1)  # load the model, warm up
    times = {pair: [] for pair in pairs}
    for _ in range(args.repeats):
        for pair in pairs:
            times[pair].append(timed(image, args.device, *pair))
    rows = [{"device": device, "tile": tile, "batch": batch, "seconds": round(statistics.median(values), 2),
             "s/MP": round(statistics.median(values) / (args.side**2 / 1e6), 3)}
            for (tile, batch), values in times.items()]
    best = min(rows, key=lambda row: row["seconds"])
    finish(f"tile_defaults_{device.split(':')[0]}", info, rows, image=f"{args.side} x {args.side} synthetic",
           fastest=f"tile {best['tile']}, batch {best['batch']} ({best['s/MP']} s/MP)")


if __name__ == "__main__":
    main()
