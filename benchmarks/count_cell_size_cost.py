"""DeepCount's time with the cell size on Automatic against Off, on real images at their own size.

    python -m benchmarks.count_cell_size_cost [--data ../shared/data/dsb2018_fluo] [--limit 78] [--rounds 3]
        [--counters default runs/x/nuclei-counter.json]

Automatic adds the segmenter's coarse probes and, where the counter's own density map says the nuclei are small
(the card's ``small_density_diameter``), a second count of the image enlarged x2. On DSB2018 validation images
(evenly spaced) each counter counts every image both ways, the two alternating and the order reversed every round,
after one untimed call; times are medians per image. Rows: all images, those Automatic enlarged, the others.
"""

import argparse
import statistics
import time

from benchmarks.common import finish, machine


def _timed(count, rounds):
    """Median seconds of `count` per mode over `rounds` alternating calls, and each mode's last result."""
    results = {mode: call() for mode, call in count.items()}  # untimed: loads the models, warms the caches
    times = {mode: [] for mode in count}
    for number in range(rounds):
        for mode in list(count)[:: 1 if number % 2 == 0 else -1]:
            start = time.perf_counter()
            results[mode] = count[mode]()
            times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) for mode, values in times.items()}, results


def _row(counter, label, measured):
    automatic = sum(m["auto"] for m in measured)
    off = sum(m["off"] for m in measured)
    return {"counter": counter, "images": label, "n": len(measured), "Automatic s": round(automatic, 2),
            "Off s": round(off, 2), "Automatic / Off": round(automatic / off, 2) if off else "",
            "median per image": round(statistics.median(m["auto"] / m["off"] for m in measured), 2)
            if measured else ""}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/dsb2018_fluo")
    parser.add_argument("--limit", type=int, default=78, help="validation images, evenly spaced")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--counters", nargs="+", default=["default"], help="counter names or card files")
    args = parser.parse_args(argv)
    from cellcount_core.running.inference import predict_count, predict_count_at_cell_scale
    from training.datasets import read_image
    from training.threshold_tuning import select_samples

    info = machine()
    images = [read_image(sample.image_path) for sample in select_samples("dsb2018", args.data, "val",
                                                                          limit=args.limit)]
    rows = []
    for counter in args.counters:
        measured = []
        for image in images:
            modes = {"auto": lambda: predict_count_at_cell_scale(image, counter, device="CPU"),
                     "off": lambda: (predict_count(image, counter, device="CPU"), None)}
            times, results = _timed(modes, args.rounds)
            measured.append({**times, "enlarged": results["auto"][1].factor > 1.0})
        rows.append(_row(counter, "all", measured))
        rows.append(_row(counter, "enlarged", [m for m in measured if m["enlarged"]]))
        rows.append(_row(counter, "not enlarged", [m for m in measured if not m["enlarged"]]))
    finish("count_cell_size_cost", info, rows, data=f"{args.data}, {len(images)} validation images")


if __name__ == "__main__":
    main()
